package main

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// retentionStats is GET /stats with the retention fields.
type retentionStats struct {
	stats
	Retention       *string            `json:"retention"`
	RetentionTopics map[string]*string `json:"retention_topics"`
	DedupWindow     *string            `json:"dedup_window"`
	StoredEvents    *int64             `json:"stored_events"`
	StoreBytes      *int64             `json:"store_bytes"`
}

func (c *client) retentionStats() retentionStats {
	c.t.Helper()
	var s retentionStats
	c.getJSON("/stats", &s)
	if s.Received != s.Unique+s.Duplicates {
		c.t.Fatalf("stats broke received == unique + duplicates: %+v", s)
	}
	if s.StoredEvents == nil || s.StoreBytes == nil || *s.StoreBytes <= 0 {
		c.t.Fatalf("stats lack the store's size: %+v", s)
	}
	return s
}

// waitFor polls cond until it holds, or fails after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a minute", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func str(p *string) string {
	if p == nil {
		return "null"
	}
	return *p
}

// TestRetentionDeletesAndRemembers: events of a topic past its retention are
// deleted, a topic kept forever is not, the counters do not move, /stats
// shows the policy and the size, and a late copy of a deleted event is still
// a duplicate (the dedup window is forever).
func TestRetentionDeletesAndRemembers(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		c, _ := startInProcess(t, t.TempDir(), "--store="+engine, "--retention=300ms", "--retention-topics=keep=0",
			"--retention-interval=20ms", "--retention-batch=7")
		var old, keep []testEvent
		for i := range 50 {
			old = append(old, ev("old", fmt.Sprint(i)))
			keep = append(keep, ev("keep", fmt.Sprint(i)))
		}
		c.mustPublish(old)
		c.mustPublish(keep) // the newest event, which SQLite never deletes, is kept anyway

		waitFor(t, "old events deleted", func() bool { return len(c.allEvents("old", 100)) == 0 })
		s := c.retentionStats()
		if s.Received != 100 || s.Unique != 100 || *s.StoredEvents != 50 {
			t.Fatalf("after retention: %+v, stored %d; want 100 received and unique, 50 stored", s.stats, *s.StoredEvents)
		}
		if str(s.Retention) != "300ms" || str(s.RetentionTopics["keep"]) != "null" || str(s.DedupWindow) != "null" {
			t.Errorf("policy shown: retention %s, topics %v, dedup window %s", str(s.Retention), s.RetentionTopics, str(s.DedupWindow))
		}
		if got := idsOf(c.allEvents("", 7)); len(got) != 50 || !got["keep/0"] || !got["keep/49"] {
			t.Fatalf("alive events: %d, want the 50 of topic keep", len(got))
		}

		c.mustPublish(old)
		after := c.retentionStats()
		if after.Unique != 100 || after.Duplicates != 50 || *after.StoredEvents != 50 {
			t.Fatalf("late copies of deleted events were stored again: %+v", after.stats)
		}
	})
}

// TestRetentionPastDedupWindow: once the dedup window is over, a re-sent
// event is stored again and counted as unique.
func TestRetentionPastDedupWindow(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		c, _ := startInProcess(t, t.TempDir(), "--store="+engine, "--retention=200ms", "--store-dedup-window=400ms",
			"--retention-interval=20ms")
		c.mustPublish([]testEvent{ev("t", "gone"), ev("t", "late")})
		c.mustPublish([]testEvent{ev("u", "newest")})
		waitFor(t, "t deleted", func() bool { return len(c.allEvents("t", 100)) == 0 })
		// Re-sent until the window is over: copies before it count as
		// duplicates, the first after it is stored again.
		waitFor(t, "re-sent event stored again", func() bool {
			c.mustPublish([]testEvent{ev("t", "gone")})
			return c.retentionStats().Unique == 4
		})
		if got := idsOf(c.allEvents("t", 100)); !got["t/gone"] {
			t.Fatalf("the event stored again is not served: %v", got)
		}
		s := c.retentionStats()
		if str(s.DedupWindow) != "400ms" || s.Received != s.Unique+s.Duplicates {
			t.Fatalf("stats %+v, dedup window %s", s.stats, str(s.DedupWindow))
		}
	})
}

// TestKill9DuringRetention: SIGKILL the process while deletion batches run
// back to back and publishers send. After a restart the counters are exact,
// the events alive are exactly unique_processed minus those deleted, each is
// served once, and every acknowledged event is either alive or remembered:
// re-sending them all stores nothing new.
func TestKill9DuringRetention(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		bin := buildBinary(t)
		dir, addr := t.TempDir(), freeAddr(t)
		proc := startProcess(t, bin, addr, dir, "--store="+engine, "--retention=200ms", "--retention-interval=1ms", "--retention-batch=20")
		c := newClient(t, "http://"+addr)
		c.http.Timeout = 5 * time.Second

		var (
			mu    sync.Mutex
			acked []testEvent
			wg    sync.WaitGroup
		)
		var stop atomic.Bool
		for w := range 4 {
			wg.Go(func() {
				for b := 0; !stop.Load(); b++ {
					batch := make([]testEvent, 0, 50)
					for i := range 50 {
						batch = append(batch, ev(fmt.Sprintf("kill-%d", w%2), fmt.Sprintf("w%d-b%d-%d", w, b, i)))
					}
					code, _, err := c.publish(batch)
					if err != nil {
						return // the server is gone
					}
					if code == http.StatusAccepted {
						mu.Lock()
						acked = append(acked, batch...)
						mu.Unlock()
					}
				}
			})
		}
		// Kill once retention has deleted thousands of events and goes on.
		waitFor(t, "retention under way", func() bool {
			s := c.retentionStats()
			return s.Unique-*s.StoredEvents > 3000
		})
		if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9: %v", err)
		}
		_ = proc.Wait()
		stop.Store(true)
		wg.Wait()

		// Restarted without retention, so what it shows holds still.
		startProcess(t, bin, addr, dir, "--store="+engine)
		s := c.retentionStats()
		alive := c.allEvents("", 1000) // fails on an event served twice
		if int64(len(alive)) != *s.StoredEvents {
			t.Fatalf("%d events served, stats say %d stored (unique %d)", len(alive), *s.StoredEvents, s.Unique)
		}
		if *s.StoredEvents >= s.Unique {
			t.Fatalf("nothing deleted before the kill: %+v", s.stats)
		}
		for i := 0; i < len(acked); i += 500 {
			c.mustPublish(acked[i:min(i+500, len(acked))])
		}
		after := c.retentionStats()
		if after.Unique != s.Unique || after.Duplicates != s.Duplicates+int64(len(acked)) || *after.StoredEvents != *s.StoredEvents {
			t.Fatalf("re-sent acknowledged events were stored again (one was lost): before %+v, after %+v (%d re-sent)",
				s.stats, after.stats, len(acked))
		}
		t.Logf("%d events acknowledged, %d deleted by retention before kill -9, %d alive", len(acked), s.Unique-*s.StoredEvents, len(alive))
	})
}
