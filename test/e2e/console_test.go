package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/config"
)

// consoleInfo is GET /console/info of the query service.
type consoleInfo struct {
	Mode        string `json:"mode"`
	Engine      string `json:"engine"`
	Retention   string `json:"retention"`
	DedupWindow string `json:"dedup_window"`
	StoreBytes  int64  `json:"store_bytes"`
	ConsumerLag *struct {
		Partitions []struct {
			Partition int    `json:"partition"`
			Lag       int64  `json:"lag"`
			Worker    string `json:"worker"`
		} `json:"partitions"`
		Unreachable []string `json:"unreachable"`
	} `json:"consumer_lag"`
}

// TestConsoleDistributed: the query service serves the console, and its
// info shows the lag of every partition as the two workers report it, each
// partition under the worker consuming it, and a worker that is gone by name.
func TestConsoleDistributed(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 2})
	gone := freeAddr(t) // nothing listens there
	urls := []string{}
	for _, w := range s.workers {
		urls = append(urls, "http://"+w.addr+"/metrics")
	}
	addr := freeAddr(t)
	q := newProcess(t, s.logDir, "query-console", bin.query, serviceEnv(t, &config.Query{}, map[string]string{
		"AGGREGATOR_ADDR":                addr,
		"AGGREGATOR_POSTGRES_URL":        s.pgURL,
		"AGGREGATOR_WORKER_METRICS_URLS": strings.Join(append(urls, "http://"+gone+"/metrics"), ","),
	}), addr)
	q.start(t)
	q.waitReady(t, time.Minute)

	s.mustPublish(t, ctx, "--events", "2000", "--duplicates", "0.2", "--topics", "4", "--batch", "200")
	s.waitDrained(t, ctx, time.Minute)

	get := func(path string) (*http.Response, []byte) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.http.Do(req) // checked against openapi.json
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return res, b
	}
	if res, b := get("/"); res.StatusCode != 200 || !strings.Contains(string(b), "Event Aggregator") {
		t.Fatalf("GET /: %d %.200s", res.StatusCode, b)
	}

	// A worker sets a partition's lag once it has fetched from it: wait
	// until each of the 12 is reported, by the worker that owns it.
	var info consoleInfo
	var last string
	ok := waitFor(ctx, 200*time.Millisecond, func() bool {
		res, b := get("/console/info")
		last = fmt.Sprintf("%d %s", res.StatusCode, b)
		if res.StatusCode != 200 || json.Unmarshal(b, &info) != nil || info.ConsumerLag == nil {
			return false
		}
		seen := map[int]bool{}
		for _, p := range info.ConsumerLag.Partitions {
			if p.Lag != 0 {
				return false // drained: every lag reaches 0
			}
			seen[p.Partition] = true
		}
		return len(seen) == partitions
	})
	if !ok {
		t.Fatalf("the console never showed the lag of %d partitions at 0: %s", partitions, last)
	}
	if info.Mode != "distributed" || info.Engine != "postgres" || info.Retention != "forever" || info.DedupWindow != "forever" || info.StoreBytes <= 0 {
		t.Errorf("info %+v", info)
	}
	// Every figure comes from one of the workers (which of them owns which
	// partition depends on how far the group had balanced).
	ours := map[string]bool{}
	for _, w := range s.workers {
		ours[w.addr] = true
	}
	for _, p := range info.ConsumerLag.Partitions {
		if !ours[p.Worker] {
			t.Errorf("partition %d reported by %s, not one of the workers %v", p.Partition, p.Worker, ours)
		}
	}
	if u := info.ConsumerLag.Unreachable; len(u) != 1 || u[0] != gone {
		t.Errorf("unreachable %q, want [%s]", u, gone)
	}
}
