package config

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

type queryCLI struct {
	Query
	Serve struct{} `cmd:"" default:"1"`
}

// TestPGBoundsDefaults: without settings the worker and the query service
// bound their Postgres sessions within seconds.
func TestPGBoundsDefaults(t *testing.T) {
	var w workerCLI
	if _, _, err := Parse(&w, nil, "worker", "", ":0", io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	var q queryCLI
	if _, _, err := Parse(&q, nil, "query", "", ":0", io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	want := PGBounds{
		PostgresStatementTimeout:         30 * time.Second,
		PostgresLockTimeout:              5 * time.Second,
		PostgresIdleInTransactionTimeout: 10 * time.Second,
	}
	if w.PGBounds != want || q.PGBounds != want {
		t.Fatalf("defaults: worker %+v, query %+v; want %+v", w.PGBounds, q.PGBounds, want)
	}
	if w.RedisTLS != (RedisTLS{}) {
		t.Fatalf("Redis TLS files set by default: %+v", w.RedisTLS)
	}
}

// TestPGBoundsFromEnv: the env names of the settings contract reach the fields.
func TestPGBoundsFromEnv(t *testing.T) {
	t.Setenv("AGGREGATOR_POSTGRES_STATEMENT_TIMEOUT", "2s")
	t.Setenv("AGGREGATOR_POSTGRES_LOCK_TIMEOUT", "250ms")
	t.Setenv("AGGREGATOR_POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT", "0s")
	t.Setenv("AGGREGATOR_REDIS_TLS_CA_FILE", "/etc/redis/ca.pem")
	t.Setenv("AGGREGATOR_REDIS_TLS_CERT_FILE", "/etc/redis/tls.crt")
	t.Setenv("AGGREGATOR_REDIS_TLS_KEY_FILE", "/etc/redis/tls.key")
	var w workerCLI
	if _, _, err := Parse(&w, nil, "worker", "", ":0", io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if w.PostgresStatementTimeout != 2*time.Second || w.PostgresLockTimeout != 250*time.Millisecond ||
		w.PostgresIdleInTransactionTimeout != 0 {
		t.Errorf("Postgres bounds from env: %+v", w.PGBounds)
	}
	if w.RedisTLSCAFile != "/etc/redis/ca.pem" || w.RedisTLSCertFile != "/etc/redis/tls.crt" ||
		w.RedisTLSKeyFile != "/etc/redis/tls.key" {
		t.Errorf("Redis TLS from env: %+v", w.RedisTLS)
	}
	q := EnvNames(&Query{})
	for _, name := range []string{"AGGREGATOR_POSTGRES_STATEMENT_TIMEOUT", "AGGREGATOR_POSTGRES_LOCK_TIMEOUT",
		"AGGREGATOR_POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT"} {
		if !slices.Contains(q, name) {
			t.Errorf("the query service reads no %s", name)
		}
	}
	if slices.Contains(q, "AGGREGATOR_REDIS_TLS_CA_FILE") {
		t.Error("the query service, which has no Redis, reads AGGREGATOR_REDIS_TLS_CA_FILE")
	}
}

func TestPGBoundsValidation(t *testing.T) {
	cases := []struct {
		cli  any
		args []string
		want string
	}{
		{&workerCLI{}, []string{"--postgres-statement-timeout=-1s"}, "--postgres-statement-timeout"},
		{&workerCLI{}, []string{"--postgres-lock-timeout=-1s"}, "--postgres-lock-timeout"},
		{&queryCLI{}, []string{"--postgres-idle-in-transaction-timeout=-1s"}, "--postgres-idle-in-transaction-timeout"},
		{&workerCLI{}, []string{"--redis-tls-cert-file=/c.pem"}, "--redis-tls-key-file"},
		{&workerCLI{}, []string{"--redis-tls-key-file=/k.pem"}, "--redis-tls-cert-file"},
	}
	for _, c := range cases {
		_, _, err := Parse(c.cli, c.args, "x", "", ":0", io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want one naming %s", c.args, err, c.want)
		}
	}
	// Zero turns a bound off and is valid.
	var w workerCLI
	args := []string{"--postgres-statement-timeout=0s", "--postgres-lock-timeout=0s", "--postgres-idle-in-transaction-timeout=0s"}
	if _, _, err := Parse(&w, args, "x", "", ":0", io.Discard, io.Discard); err != nil {
		t.Errorf("zero bounds refused: %v", err)
	}
}
