package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMUnderLoad: publishers keep sending while the process gets
// SIGTERM. Readiness turns false at once, publishes are still accepted
// during the drain delay, then the server stops accepting and exits 0.
// Every answer is 202 or 503, or there is none (a connection refused), and
// after a restart every acknowledged event is stored, and nothing the
// client was not told about or left to retry.
func TestSIGTERMUnderLoad(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		bin := buildBinary(t)
		dir, addr := t.TempDir(), freeAddr(t)
		// Long enough for the test to see readiness false while publishes are
		// still accepted.
		t.Setenv("AGGREGATOR_SHUTDOWN_DELAY", "2s")
		t.Setenv("AGGREGATOR_SHUTDOWN_TIMEOUT", "20s")
		proc := startProcess(t, bin, addr, dir, "--store="+engine)
		exited := make(chan error, 1)
		go func() { exited <- proc.Wait() }()
		c := newClient(t, "http://"+addr)
		c.http.Timeout = 30 * time.Second

		var (
			mu            sync.Mutex
			acked         []testEvent
			unexpected    []string
			total         atomic.Int64
			notReady      atomic.Bool
			afterNotReady atomic.Int64 // 202s to requests sent once /readyz said 503
			refused       atomic.Int64 // connections refused or reset before a handler saw them
			maybe         atomic.Int64 // events of 503 answers: the client retries them
			unanswered    atomic.Int64 // events of requests without an answer, retried too
			gone          atomic.Bool  // the process has exited
			wg            sync.WaitGroup
		)
		for w := range 16 {
			wg.Go(func() {
				for b := 0; !gone.Load(); b++ {
					batch := make([]testEvent, 0, 10)
					for i := range 10 {
						batch = append(batch, ev(fmt.Sprintf("drain-%d", w%4), fmt.Sprintf("w%d-b%d-%d", w, b, i)))
					}
					sentNotReady := notReady.Load()
					code, body, err := c.publish(batch)
					switch {
					case err != nil:
						// Not acknowledged: refused, or (rarely) cut by Go's
						// closing of a connection it saw idle just as a request
						// arrived on it. The client retries; dedup absorbs it.
						refused.Add(1)
						unanswered.Add(int64(len(batch)))
					case code == http.StatusServiceUnavailable:
						maybe.Add(int64(len(batch)))
					case code == http.StatusAccepted:
						mu.Lock()
						acked = append(acked, batch...)
						mu.Unlock()
						total.Add(int64(len(batch)))
						if sentNotReady {
							afterNotReady.Add(1)
						}
					default:
						mu.Lock()
						unexpected = append(unexpected, fmt.Sprintf("status %d: %s", code, body))
						mu.Unlock()
					}
				}
			})
		}
		waitCond(t, "1,000 events acknowledged", func() bool { return total.Load() >= 1000 })
		if err := proc.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("SIGTERM: %v", err)
		}
		waitCond(t, "/readyz to answer 503 after SIGTERM", func() bool {
			code, body := get(addr, "/readyz")
			return code == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
		})
		notReady.Store(true)
		if code, _ := get(addr, "/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz while draining: %d", code)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("the process did not exit within a minute of SIGTERM")
		}
		gone.Store(true)
		wg.Wait()
		if len(unexpected) > 0 {
			t.Fatalf("%d answers neither 202, 503 nor refused, e.g. %s", len(unexpected), unexpected[0])
		}
		if afterNotReady.Load() == 0 {
			t.Fatal("no publish was accepted once readiness was false: the drain delay did not serve")
		}

		startProcess(t, bin, addr, dir, "--store="+engine)
		s := c.stats()
		stored := idsOf(c.allEvents("", 1000))
		for _, e := range acked {
			if !stored[e.Topic+"/"+e.EventID] {
				t.Fatalf("acknowledged event %s/%s lost in the shutdown", e.Topic, e.EventID)
			}
		}
		// Nothing beyond what was acknowledged, answered 503 or left without
		// an answer (the client retries those two).
		if int64(len(stored)) != s.Unique || s.Unique > int64(len(acked))+maybe.Load()+unanswered.Load() {
			t.Fatalf("unique_processed %d, stored rows %d, acknowledged %d, in 503 answers %d, unanswered %d",
				s.Unique, len(stored), len(acked), maybe.Load(), unanswered.Load())
		}
		t.Logf("%d events acknowledged (%d requests after readiness turned false), %d stored, %d requests without an answer, %d events answered 503",
			len(acked), afterNotReady.Load(), len(stored), refused.Load(), maybe.Load())
	})
}

func get(addr, path string) (int, string) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitCond polls cond until it holds; the test fails after a minute.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
