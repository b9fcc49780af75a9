package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"

	"github.com/event-aggregator/event-aggregator/pkg/config"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
	"github.com/event-aggregator/event-aggregator/pkg/tlsconfig"
)

func TestNewSecurityMechanisms(t *testing.T) {
	for mech, want := range map[string]string{
		"none": "", "": "", "plain": "PLAIN", "scram-sha-256": "SCRAM-SHA-256", "SCRAM-SHA-512": "SCRAM-SHA-512",
	} {
		s, err := NewSecurity(nil, mech, "u", "p")
		if err != nil {
			t.Fatalf("%q: %v", mech, err)
		}
		got := ""
		if s.SASL != nil {
			got = s.SASL.Name()
		}
		if got != want {
			t.Errorf("%q: mechanism %q, want %q", mech, got, want)
		}
	}
	if _, err := NewSecurity(nil, "gssapi", "u", "p"); err == nil || !strings.Contains(err.Error(), "gssapi") {
		t.Errorf("unknown mechanism: err %v, want one naming it", err)
	}
}

// TestSecurityFromConfigReadsPasswordFile: the mounted Secret file wins and
// a missing one fails at start, naming the file.
func TestSecurityFromConfigReadsPasswordFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := config.KafkaSecurity{SASLMechanism: "plain", SASLUsername: "u", SASLPassword: "from-env", SASLPasswordFile: file}
	s, err := SecurityFromConfig(&c)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := s.SASL.(plain.Mechanism); !ok || m.Password != "from-file" || m.Username != "u" {
		t.Fatalf("mechanism %#v, want PLAIN as u with the file's password", s.SASL)
	}
	c.SASLPasswordFile = filepath.Join(t.TempDir(), "absent")
	if _, err := SecurityFromConfig(&c); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("missing password file: err %v, want one naming it", err)
	}
	c.SASLPasswordFile = ""
	c.TLS, c.TLSCAFile = true, filepath.Join(t.TempDir(), "ca.pem")
	if _, err := SecurityFromConfig(&c); err == nil || !strings.Contains(err.Error(), "CA bundle") {
		t.Errorf("missing CA file: err %v, want a CA bundle error", err)
	}
}

// secure returns the Security of the test broker's SASL_SSL listener.
func secure(t *testing.T, k testdeps.KafkaSASL, mechanism, password, caFile string) Security {
	t.Helper()
	tlsCfg, err := tlsconfig.Files{CAFile: caFile}.Config()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSecurity(tlsCfg, mechanism, k.User, password)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// awaitReady waits until the check passes: ACLs reach the broker's
// authorizer shortly after CreateACLs returns.
func awaitReady(t *testing.T, topics *Topics) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for {
		if err = topics.Ready(ctx); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not ready after 30s: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestSecureListener: each SASL mechanism over TLS reaches topics the
// principal may read and write (no other ACL) and produces to them.
func TestSecureListener(t *testing.T) {
	k := testdeps.KafkaSecure(t)
	topic := testdeps.NewKafkaTopic(t, 2)
	testdeps.GrantKafkaACLs(t, k.Principal(), "", topic)
	for _, mech := range []string{config.SASLPlain, config.SASLScramSHA256, config.SASLScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			sec := secure(t, k, mech, k.Password, k.CAFile)
			topics, err := NewTopics(k.Brokers, sec, false, TopicSpec{Name: topic})
			if err != nil {
				t.Fatal(err)
			}
			awaitReady(t, topics)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := topics.Ensure(ctx); err != nil {
				t.Fatalf("ensure existing topics without CREATE: %v", err)
			}
			p, err := NewProducer(ProducerConfig{Brokers: k.Brokers, Topic: topic, Security: sec})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ev := event.Event{Topic: "t", EventID: mech, Source: "s", Payload: []byte(`{}`), Timestamp: time.Now().UTC()}
			if err := p.Publish(ctx, []event.Event{ev}); err != nil {
				t.Fatalf("publish over %s: %v", mech, err)
			}
		})
	}
}

// TestSecureWrongPassword: refused credentials are one error that says so.
func TestSecureWrongPassword(t *testing.T) {
	k := testdeps.KafkaSecure(t)
	topics, err := NewTopics(k.Brokers, secure(t, k, config.SASLScramSHA512, "not-the-password", k.CAFile), false,
		TopicSpec{Name: "any"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = topics.Ready(ctx)
	if !errors.Is(err, kafka.SASLAuthenticationFailed) || !strings.Contains(err.Error(), "refused the SASL credentials") {
		t.Fatalf("err %v, want SASL authentication failed with a hint", err)
	}
	if testing.Verbose() {
		t.Log(err)
	}
}

// TestSecureUntrustedCA: a broker certificate of another CA is one error
// that names the CA setting.
func TestSecureUntrustedCA(t *testing.T) {
	k := testdeps.KafkaSecure(t)
	topics, err := NewTopics(k.Brokers, secure(t, k, config.SASLScramSHA256, k.Password, testdeps.OtherCAFile(t)), false,
		TopicSpec{Name: "any"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = topics.Ready(ctx)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) || !strings.Contains(err.Error(), "AGGREGATOR_KAFKA_TLS_CA_FILE") {
		t.Fatalf("err %v, want an unknown authority error naming AGGREGATOR_KAFKA_TLS_CA_FILE", err)
	}
	if testing.Verbose() {
		t.Log(err)
	}
}

// TestTopicsMissingWithoutCreate: with creation off, a missing topic is an
// error naming it and the permission that would let it be created, and
// nothing is created.
func TestTopicsMissingWithoutCreate(t *testing.T) {
	brokers := testdeps.KafkaBrokers(t)
	existing := testdeps.NewKafkaTopic(t, 1)
	missing := existing + "-missing"
	topics, err := NewTopics(brokers, Security{}, false, TopicSpec{Name: existing}, TopicSpec{Name: missing})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, check := range map[string]func(context.Context) error{"Ensure": topics.Ensure, "Ready": topics.Ready} {
		err := check(ctx)
		if !errors.Is(err, ErrTopicMissing) || !strings.Contains(err.Error(), missing) ||
			strings.Contains(err.Error(), existing+" ") || !strings.Contains(err.Error(), "CREATE on the cluster or the topic") {
			t.Errorf("%s: err %v, want ErrTopicMissing naming %s and the CREATE permission", name, err, missing)
		}
	}
	client, done := topics.open()
	defer done()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{missing}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range md.Topics {
		if tp.Name == missing && tp.Error == nil {
			t.Errorf("topic %s was created with creation off", missing)
		}
	}
}

// TestCreateTopicsWithoutCreateACL: creation on, but the principal may not
// create: the error names the permission instead of a bare authorization
// failure.
func TestCreateTopicsWithoutCreateACL(t *testing.T) {
	k := testdeps.KafkaSecure(t)
	name := testdeps.NewKafkaTopic(t, 1) + "-new"
	testdeps.GrantKafkaACLs(t, k.Principal(), "", name)
	topics, err := NewTopics(k.Brokers, secure(t, k, config.SASLScramSHA512, k.Password, k.CAFile), true,
		TopicSpec{Name: name, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = topics.Ensure(ctx)
	if err == nil || !strings.Contains(err.Error(), "needs CREATE on the cluster or on the topic") {
		t.Fatalf("err %v, want one naming the CREATE permission", err)
	}
}

// TestSecurityProtocolMismatch: TLS against a PLAINTEXT listener, and no
// TLS against a TLS listener, each say which setting to look at rather than
// a bare EOF.
func TestSecurityProtocolMismatch(t *testing.T) {
	k := testdeps.KafkaSecure(t)
	plainBrokers := testdeps.KafkaBrokers(t)
	cases := []struct {
		name    string
		brokers []string
		sec     Security
		want    string
	}{
		{"TLS to PLAINTEXT", plainBrokers, secure(t, k, config.SASLNone, "", k.CAFile), "may not speak TLS"},
		{"PLAINTEXT to SASL_SSL", k.Brokers, Security{}, "AGGREGATOR_KAFKA_TLS=true"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topics, err := NewTopics(tc.brokers, tc.sec, false, TopicSpec{Name: "any"})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = topics.Ready(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one saying %q", err, tc.want)
			}
			if testing.Verbose() {
				t.Log(err)
			}
		})
	}
}

// TestGroupWithoutACL: a worker's principal that may read its topics but
// not its consumer group is not ready, and the error names the group.
func TestGroupWithoutACL(t *testing.T) {
	k := testdeps.KafkaSecure(t)
	topic := testdeps.NewKafkaTopic(t, 1)
	allowed, denied := topic+"-group", topic+"-other-group"
	testdeps.GrantKafkaACLs(t, k.Principal(), allowed, topic)
	sec := secure(t, k, config.SASLScramSHA512, k.Password, k.CAFile)
	for group, ok := range map[string]bool{allowed: true, denied: false} {
		topics, err := NewTopics(k.Brokers, sec, false, TopicSpec{Name: topic})
		if err != nil {
			t.Fatal(err)
		}
		topics.RequireGroup(group)
		if ok {
			awaitReady(t, topics)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = topics.Ready(ctx)
		if !errors.Is(err, kafka.GroupAuthorizationFailed) || !strings.Contains(err.Error(), denied) {
			t.Errorf("group without ACL: err %v, want group authorization failed naming %s", err, denied)
		}
		if testing.Verbose() {
			t.Log(err)
		}
	}
}

// TestSecurityFromConfigClientCertificate: mutual TLS settings reach every
// connection's TLS configuration, with verification on by default.
func TestSecurityFromConfigClientCertificate(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "event-aggregator"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	c := config.KafkaSecurity{TLS: true, TLSCertFile: certFile, TLSKeyFile: keyFile, TLSServerName: "kafka.internal"}
	s, err := SecurityFromConfig(&c)
	if err != nil {
		t.Fatal(err)
	}
	if s.TLS == nil || len(s.TLS.Certificates) != 1 || s.TLS.ServerName != "kafka.internal" || s.TLS.InsecureSkipVerify || s.SASL != nil {
		t.Fatalf("TLS config %+v, SASL %v: want the client certificate, the server name, verification on, no SASL", s.TLS, s.SASL)
	}
	if d := s.dialer(); d.TLS != s.TLS {
		t.Error("the dialer does not use the TLS configuration")
	}
	if tr := s.transport(); tr.TLS != s.TLS {
		t.Error("the transport does not use the TLS configuration")
	}
	c.TLS = false
	if s, err := SecurityFromConfig(&c); err != nil || s.TLS != nil {
		t.Errorf("TLS off: %+v, %v; want no TLS", s.TLS, err)
	}
}
