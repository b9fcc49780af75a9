package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestShutdownSettings: every binary reads the drain delay and timeout from
// the environment, defaults to no delay and 20 s, and refuses bad values.
func TestShutdownSettings(t *testing.T) {
	type aggregatorCLI struct {
		Aggregator
		Serve struct{} `cmd:"" default:"1"`
	}
	type queryCLI struct {
		Query
		Serve struct{} `cmd:"" default:"1"`
	}
	shutdownOf := map[string]func(any) Shutdown{
		"aggregator": func(c any) Shutdown { return c.(*aggregatorCLI).Shutdown },
		"ingest":     func(c any) Shutdown { return c.(*ingestCLI).Shutdown },
		"worker":     func(c any) Shutdown { return c.(*workerCLI).Shutdown },
		"query":      func(c any) Shutdown { return c.(*queryCLI).Shutdown },
	}
	newCLI := map[string]func() any{
		"aggregator": func() any { return &aggregatorCLI{} },
		"ingest":     func() any { return &ingestCLI{} },
		"worker":     func() any { return &workerCLI{} },
		"query":      func() any { return &queryCLI{} },
	}
	for name, mk := range newCLI {
		cli := mk()
		if _, _, err := Parse(cli, nil, name, "", ":0", io.Discard, io.Discard); err != nil {
			t.Fatalf("%s defaults: %v", name, err)
		}
		if got := shutdownOf[name](cli); got.ShutdownDelay != 0 || got.ShutdownTimeout != 20*time.Second {
			t.Errorf("%s defaults: %+v, want no delay and 20s", name, got)
		}

		t.Setenv("AGGREGATOR_SHUTDOWN_DELAY", "5s")
		t.Setenv("AGGREGATOR_SHUTDOWN_TIMEOUT", "30s")
		cli = mk()
		if _, _, err := Parse(cli, nil, name, "", ":0", io.Discard, io.Discard); err != nil {
			t.Fatalf("%s from env: %v", name, err)
		}
		if got := shutdownOf[name](cli); got.ShutdownDelay != 5*time.Second || got.ShutdownTimeout != 30*time.Second {
			t.Errorf("%s from env: %+v, want 5s and 30s", name, got)
		}
		t.Setenv("AGGREGATOR_SHUTDOWN_DELAY", "0s")
		t.Setenv("AGGREGATOR_SHUTDOWN_TIMEOUT", "20s")

		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--shutdown-delay=-1s"}, "--shutdown-delay"},
			{[]string{"--shutdown-timeout=0s"}, "--shutdown-timeout"},
		} {
			_, _, err := Parse(mk(), c.args, name, "", ":0", io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s %v: err %v, want one naming %s", name, c.args, err, c.want)
			}
		}
	}
}
