package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

type aggregatorCLI struct {
	Aggregator
	Serve struct{} `cmd:"" default:"1"`
}

// TestRetentionSettings: the policy is read as written, and settings that
// contradict each other are refused at start, naming the flag.
func TestRetentionSettings(t *testing.T) {
	var c aggregatorCLI
	args := []string{"--retention=24h", "--retention-topics=orders=720h, audit=0s,a=b=1h", "--store-dedup-window=0s"}
	if _, _, err := Parse(&c, args, "x", "", ":0", io.Discard, io.Discard); err != nil {
		t.Fatalf("parse: %v", err)
	}
	p := c.Policy()
	if p.Default != 24*time.Hour || p.DedupWindow != 0 || len(p.Topics) != 3 ||
		p.For("orders") != 720*time.Hour || p.For("audit") != 0 || p.For("a=b") != time.Hour || p.For("other") != 24*time.Hour {
		t.Fatalf("policy %+v", p)
	}
	var q queryCLI
	if _, _, err := Parse(&q, nil, "x", "", ":0", io.Discard, io.Discard); err != nil || q.Policy().Deletes() {
		t.Fatalf("defaults: %v; policy %+v deletes", err, q.Policy())
	}

	cases := []struct {
		cli  any
		args []string
		want string
	}{
		{&aggregatorCLI{}, []string{"--retention=-1h"}, "--retention"},
		{&aggregatorCLI{}, []string{"--retention=1h", "--store-dedup-window=30m"}, "--store-dedup-window 30m0s is shorter than --retention 1h0m0s"},
		{&aggregatorCLI{}, []string{"--store-dedup-window=30m"}, "shorter than --retention (forever)"},
		{&aggregatorCLI{}, []string{"--retention=1h", "--retention-topics=x=2h", "--store-dedup-window=90m"}, `retention of topic "x"`},
		{&aggregatorCLI{}, []string{"--retention=1h", "--retention-topics=x=0s", "--store-dedup-window=2h"}, `retention of topic "x" (forever)`},
		{&aggregatorCLI{}, []string{"--retention-topics=orders"}, "--retention-topics"},
		{&aggregatorCLI{}, []string{"--retention-topics=orders=soon"}, "--retention-topics"},
		{&aggregatorCLI{}, []string{"--retention-topics=orders=-1h"}, "--retention-topics"},
		{&aggregatorCLI{}, []string{"--retention-topics=a=1h,a=2h"}, "named twice"},
		{&aggregatorCLI{}, []string{"--retention-batch=0"}, "--retention-batch"},
		{&aggregatorCLI{}, []string{"--retention-interval=0s"}, "--retention-interval"},
		{&queryCLI{}, []string{"--retention=1h", "--store-dedup-window=1m"}, "--store-dedup-window"},
		{&workerCLI{}, []string{"--retention=1h", "--store-dedup-window=2h", "--dedup-window=3h"}, "--dedup-window 3h0m0s must not exceed --store-dedup-window"},
	}
	for _, c := range cases {
		_, _, err := Parse(c.cli, c.args, "x", "", ":0", io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want one naming %s", c.args, err, c.want)
		}
	}
	// A window equal to every retention, and a Redis window within it, pass.
	var w workerCLI
	if _, _, err := Parse(&w, []string{"--retention=2h", "--retention-topics=x=3h", "--store-dedup-window=3h", "--dedup-window=3h"},
		"x", "", ":0", io.Discard, io.Discard); err != nil {
		t.Errorf("valid settings refused: %v", err)
	}
}
