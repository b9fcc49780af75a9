package config

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKafkaSecurityParse(t *testing.T) {
	for _, mech := range []string{"none", "plain", "scram-sha-256", "scram-sha-512"} {
		var c ingestCLI
		args := []string{"--kafka-sasl-mechanism=" + mech, "--kafka-sasl-username=u", "--kafka-sasl-password=p"}
		if _, _, err := Parse(&c, args, "x", "", ":0", io.Discard, io.Discard); err != nil {
			t.Errorf("%s: %v", mech, err)
		} else if c.SASLMechanism != mech {
			t.Errorf("%s: parsed %q", mech, c.SASLMechanism)
		}
	}
	var c workerCLI
	if _, _, err := Parse(&c, nil, "x", "", ":0", io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if c.SASLMechanism != SASLNone || c.TLS || c.TLSInsecureSkipVerify || !c.CreateTopics || c.MinInsyncReplicas != 0 {
		t.Errorf("defaults: %+v, want no SASL, no TLS, verification on, topics created, min ISR by rule", c.KafkaSecurity)
	}
	t.Setenv("AGGREGATOR_KAFKA_CREATE_TOPICS", "false")
	t.Setenv("AGGREGATOR_KAFKA_TLS", "true")
	c = workerCLI{}
	if _, _, err := Parse(&c, nil, "x", "", ":0", io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if c.CreateTopics || !c.TLS {
		t.Errorf("from env: create topics %v, TLS %v; want false, true", c.CreateTopics, c.TLS)
	}
}

func TestKafkaSecurityValidation(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--kafka-sasl-mechanism=gssapi"}, "--kafka-sasl-mechanism"},
		{[]string{"--kafka-sasl-mechanism=plain", "--kafka-sasl-password=p"}, "--kafka-sasl-username"},
		{[]string{"--kafka-sasl-mechanism=scram-sha-512", "--kafka-sasl-username=u"}, "--kafka-sasl-password-file"},
		{[]string{"--kafka-tls-ca-file=/ca.pem"}, "need --kafka-tls"},
		{[]string{"--kafka-tls", "--kafka-tls-cert-file=/c.pem"}, "given together"},
		{[]string{"--kafka-min-insync-replicas=2"}, "--kafka-min-insync-replicas"},
		{[]string{"--kafka-min-insync-replicas=-1"}, "--kafka-min-insync-replicas"},
	}
	for _, c := range cases {
		_, _, err := Parse(&ingestCLI{}, c.args, "x", "", ":0", io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want one naming %s", c.args, err, c.want)
		}
	}
}

func TestKafkaPasswordFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "password")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k := KafkaSecurity{SASLPassword: "plain-one"}
	if pw, err := k.Password(); err != nil || pw != "plain-one" {
		t.Errorf("no file: %q, %v", pw, err)
	}
	k.SASLPasswordFile = file
	if pw, err := k.Password(); err != nil || pw != "s3cret" {
		t.Errorf("file wins, newline dropped: %q, %v", pw, err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k.SASLPasswordFile = empty
	if _, err := k.Password(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: err %v", err)
	}
	k.SASLPasswordFile = filepath.Join(dir, "absent")
	if _, err := k.Password(); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("absent file: err %v, want one naming it", err)
	}
}

func TestKafkaPasswordMasked(t *testing.T) {
	var cfg Ingest
	cfg.SASLMechanism, cfg.SASLUsername, cfg.SASLPassword = SASLScramSHA512, "svc-user", "hunter5"
	cfg.SASLPasswordFile = "/var/run/secrets/kafka/password"
	var out strings.Builder
	for _, a := range LogAttrs(&cfg) {
		out.WriteString(a.String() + "\n")
	}
	if strings.Contains(out.String(), "hunter5") {
		t.Errorf("SASL password logged:\n%s", out.String())
	}
	for _, visible := range []string{"AGGREGATOR_KAFKA_SASL_PASSWORD=***", "svc-user", "/var/run/secrets/kafka/password"} {
		if !strings.Contains(out.String(), visible) {
			t.Errorf("%q should be in the log line:\n%s", visible, out.String())
		}
	}
}
