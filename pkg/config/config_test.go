package config

import (
	"io"
	"strings"
	"testing"
)

type workerCLI struct {
	Worker
	Serve struct{} `cmd:"" default:"1"`
}

type ingestCLI struct {
	Ingest
	Serve struct{} `cmd:"" default:"1"`
}

func TestDefaultsAreValid(t *testing.T) {
	for name, cli := range map[string]any{"worker": &workerCLI{}, "ingest": &ingestCLI{}} {
		if _, _, err := Parse(cli, nil, name, "", ":0", io.Discard, io.Discard); err != nil {
			t.Errorf("%s defaults: %v", name, err)
		}
	}
}

// TestValidation: settings that would break the service at run time are
// refused at start, with the flag named.
func TestValidation(t *testing.T) {
	cases := []struct {
		cli  any
		args []string
		want string
	}{
		{&workerCLI{}, []string{"--lease-ttl=0s"}, "--lease-ttl"},
		{&workerCLI{}, []string{"--dedup-window=1s", "--lease-ttl=30s"}, "--dedup-window"},
		{&workerCLI{}, []string{"--batch-size=0"}, "--batch-size"},
		{&workerCLI{}, []string{"--kafka-dlq-topic=events"}, "--kafka-dlq-topic"},
		{&workerCLI{}, []string{"--postgres-url="}, "--postgres-url"},
		{&ingestCLI{}, []string{"--publish-timeout=0s"}, "--publish-timeout"},
		{&ingestCLI{}, []string{"--max-events=0"}, "--max-events"},
		{&ingestCLI{}, []string{"--max-body-bytes=0"}, "--max-body-bytes"},
		{&ingestCLI{}, []string{"--max-payload-bytes=2000000", "--max-body-bytes=4000000"}, "Kafka record"},
		{&ingestCLI{}, []string{"--rate-limit=-1"}, "--rate-limit"},
		{&ingestCLI{}, []string{"--rate-limit=NaN"}, "--rate-limit"},
		{&ingestCLI{}, []string{"--rate-burst=-1"}, "--rate-burst"},
		{&aggregatorCLI{}, []string{"--pebble-filter-mb=-1"}, "--pebble-filter-mb"},
		{&aggregatorCLI{}, []string{"--pebble-memtable-mb=0"}, "--pebble-memtable-mb"},
	}
	for _, c := range cases {
		_, _, err := Parse(c.cli, c.args, "x", "", ":0", io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want one naming %s", c.args, err, c.want)
		}
	}
}

func TestSecretsMasked(t *testing.T) {
	cfg := Worker{}
	cfg.Postgres.URL = "postgres://u:hunter2@db:5432/x?sslmode=disable&password=hunter3"
	cfg.Redis.URL = "redis://:hunter4@cache:6379/0"
	cfg.APIKeys = []string{"k1", "k2"}
	var out strings.Builder
	for _, a := range LogAttrs(&cfg) {
		out.WriteString(a.String() + "\n")
	}
	for _, secret := range []string{"hunter2", "hunter3", "hunter4", "k1"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("secret %q logged:\n%s", secret, out.String())
		}
	}
	if !strings.Contains(out.String(), "db:5432") {
		t.Errorf("the host should stay visible:\n%s", out.String())
	}
}
