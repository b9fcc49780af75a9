package testdeps

import (
	"context"
	"github.com/segmentio/kafka-go"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// KafkaSASL is the SASL_SSL listener of the test Kafka (scripts/deps/kafka.sh):
// TLS with a certificate of the CA in CAFile, and one SASL user known to
// PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, with no ACL of its own.
type KafkaSASL struct {
	Brokers  []string
	User     string
	Password string
	CAFile   string
}

// Principal is the user's ACL principal.
func (k KafkaSASL) Principal() string { return "User:" + k.User }

// KafkaSecure returns the test Kafka's SASL_SSL listener from
// AGGREGATOR_TEST_KAFKA_SASL_BROKERS, _SASL_USER, _SASL_PASSWORD and
// AGGREGATOR_TEST_KAFKA_CA_FILE, or the defaults of scripts/deps/kafka.sh.
// It fails the test when the listener does not answer or the CA file is
// missing.
func KafkaSecure(t testing.TB) KafkaSASL {
	t.Helper()
	k := KafkaSASL{
		Brokers:  splitList(envOr("AGGREGATOR_TEST_KAFKA_SASL_BROKERS", "127.0.0.1:9094")),
		User:     envOr("AGGREGATOR_TEST_KAFKA_SASL_USER", "aggregator"),
		Password: envOr("AGGREGATOR_TEST_KAFKA_SASL_PASSWORD", "aggregator-secret"),
		CAFile:   envOr("AGGREGATOR_TEST_KAFKA_CA_FILE", defaultCAFile()),
	}
	if _, err := os.Stat(k.CAFile); err != nil {
		t.Fatalf("Kafka CA file: %v; start Kafka with `scripts/deps.sh up kafka` and export "+
			"AGGREGATOR_TEST_KAFKA_CA_FILE as scripts/test.sh does", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		conn, err := (&kafka.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", k.Brokers[0])
		if err == nil {
			conn.Close()
			return k
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("the SASL_SSL listener of Kafka is not reachable at %v (%v); restart Kafka with "+
		"`scripts/deps.sh up kafka` (it adds the listener) or set AGGREGATOR_TEST_KAFKA_SASL_BROKERS", k.Brokers, last)
	return k
}

// GrantKafkaACLs allows principal READ, WRITE and DESCRIBE on each topic and
// READ on group, through the PLAINTEXT listener (a super user), and removes
// those ACLs when the test ends.
func GrantKafkaACLs(t testing.TB, principal, group string, topics ...string) {
	t.Helper()
	var acls []kafka.ACLEntry
	allow := func(rt kafka.ResourceType, name string, op kafka.ACLOperationType) {
		acls = append(acls, kafka.ACLEntry{
			ResourceType: rt, ResourceName: name, ResourcePatternType: kafka.PatternTypeLiteral,
			Principal: principal, Host: "*", Operation: op, PermissionType: kafka.ACLPermissionTypeAllow,
		})
	}
	for _, topic := range topics {
		for _, op := range []kafka.ACLOperationType{kafka.ACLOperationTypeRead, kafka.ACLOperationTypeWrite, kafka.ACLOperationTypeDescribe} {
			allow(kafka.ResourceTypeTopic, topic, op)
		}
	}
	if group != "" {
		allow(kafka.ResourceTypeGroup, group, kafka.ACLOperationTypeRead)
	}
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(KafkaBrokers(t)...), Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := client.CreateACLs(ctx, &kafka.CreateACLsRequest{ACLs: acls})
	if err == nil {
		for _, e := range res.Errors {
			if e != nil {
				err = e
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("create ACLs for %s: %v", principal, err)
	}
	t.Cleanup(func() {
		tr := &kafka.Transport{}
		defer tr.CloseIdleConnections()
		client := &kafka.Client{Addr: kafka.TCP(KafkaBrokers(t)...), Transport: tr}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		filters := make([]kafka.DeleteACLsFilter, len(acls))
		for i, a := range acls {
			filters[i] = kafka.DeleteACLsFilter{
				ResourceTypeFilter: a.ResourceType, ResourceNameFilter: a.ResourceName,
				ResourcePatternTypeFilter: a.ResourcePatternType, PrincipalFilter: a.Principal,
				HostFilter: a.Host, Operation: a.Operation, PermissionType: a.PermissionType,
			}
		}
		if _, err := client.DeleteACLs(ctx, &kafka.DeleteACLsRequest{Filters: filters}); err != nil {
			t.Errorf("delete ACLs of %s: %v", principal, err)
		}
	})
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// defaultCAFile is where scripts/deps/kafka.sh writes its CA by default,
// found from this file's place in the repository.
func defaultCAFile() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return filepath.Join(filepath.Dir(file), "..", "..", ".cache", "deps", "kafka", "tls", "ca.pem")
}
