package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeClock moves only when told: Sleep jumps ahead, and the test server
// advances it to model a stalled answer.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.advance(d)
	return ctx.Err()
}

func (c *fakeClock) advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// runStalled sends 5 single events at 10/s through one client to a server
// that takes one (fake) second per request, and returns the latencies.
func runStalled(t *testing.T, openLoop bool) Latency {
	t.Helper()
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clk.advance(time.Second)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	rep, err := Run(t.Context(), Config{
		URL: srv.URL, Events: 5, Topics: 1, Batch: 1, Concurrency: 1, Rate: 10, OpenLoop: openLoop,
		Timeout: 10 * time.Second, RunID: "r", Seed: 1, Client: srv.Client(), clock: clk,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 5 || rep.Failures != 0 {
		t.Fatalf("%d requests, %d failures; want 5, 0", rep.Requests, rep.Failures)
	}
	return rep.Latency
}

func TestOpenLoopCountsQueueing(t *testing.T) {
	t.Parallel()
	// Request k is due at k·100ms but the one client is free only at k s: it
	// waits k·900ms, then takes 1 s. Latencies 1.0, 1.9, 2.8, 3.7, 4.6 s.
	open := runStalled(t, true)
	if open.Min != 1000 || open.Max != 4600 || open.Mean != 2800 || open.P50 != 2800 {
		t.Errorf("open loop: %+v, want min 1000, p50 2800, mean 2800, max 4600 ms", open)
	}
	// Closed loop only sees the server's second.
	closed := runStalled(t, false)
	if closed.Min != 1000 || closed.Max != 1000 {
		t.Errorf("closed loop: %+v, want every request 1000 ms", closed)
	}
}
