package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// buildBinary compiles this command once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "aggregator")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build: %v", err)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess runs the binary and waits until it answers /readyz.
func startProcess(t *testing.T, bin, addr, dataDir string, extra ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--addr", addr, "--data-dir", dataDir, "--log-level", "warn"}, extra...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("aggregator on %s not ready in 30 s", addr)
	return nil
}

// TestKill9WhilePublishing: SIGKILL the process while publishers send; after
// a restart every acknowledged event is there, the counters are exact, and
// re-sending every acknowledged event stores nothing new.
func TestKill9WhilePublishing(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		bin := buildBinary(t)
		dir, addr := t.TempDir(), freeAddr(t)
		proc := startProcess(t, bin, addr, dir, "--store="+engine)
		c := newClient(t, "http://"+addr)
		c.http.Timeout = 5 * time.Second

		var (
			mu    sync.Mutex
			acked []testEvent
			total atomic.Int64
			wg    sync.WaitGroup
		)
		for w := range 8 {
			wg.Go(func() {
				for b := 0; ; b++ {
					batch := make([]testEvent, 0, 21)
					for i := range 20 {
						batch = append(batch, ev(fmt.Sprintf("crash-%d", w%3), fmt.Sprintf("w%d-b%d-%d", w, b, i)))
					}
					batch = append(batch, batch[0]) // a duplicate in every batch
					code, _, err := c.publish(batch)
					if err != nil {
						return // the server is gone
					}
					if code == http.StatusAccepted {
						mu.Lock()
						acked = append(acked, batch[:20]...)
						mu.Unlock()
						total.Add(20)
					}
				}
			})
		}
		deadline := time.Now().Add(20 * time.Second)
		for total.Load() < 3000 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9: %v", err)
		}
		_ = proc.Wait()
		wg.Wait()
		if len(acked) < 1000 {
			t.Fatalf("only %d events acknowledged before the kill; the test proves little", len(acked))
		}

		startProcess(t, bin, addr, dir, "--store="+engine)
		s := c.stats()
		stored := idsOf(c.allEvents("", 1000))
		for _, e := range acked {
			if !stored[e.Topic+"/"+e.EventID] {
				t.Fatalf("acknowledged event %s/%s lost in the crash", e.Topic, e.EventID)
			}
		}
		if int64(len(stored)) != s.Unique {
			t.Fatalf("unique_processed %d, stored rows %d", s.Unique, len(stored))
		}

		// The dedup memory survived: every acknowledged event is a duplicate now.
		for i := 0; i < len(acked); i += 500 {
			c.mustPublish(acked[i:min(i+500, len(acked))])
		}
		after := c.stats()
		if after.Unique != s.Unique || after.Duplicates != s.Duplicates+int64(len(acked)) {
			t.Fatalf("re-sent acknowledged events were stored again: before %+v, after %+v (%d re-sent)", s, after, len(acked))
		}
		t.Logf("%d events acknowledged before kill -9, %d stored (in-flight ones may land too)", len(acked), len(stored))
	})
}
