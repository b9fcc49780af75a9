package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestTraceInJaeger runs the binary exporting to a real Jaeger, publishes
// under a known trace id and finds the request's path in Jaeger: the
// POST /publish server span, the batch span under it with its claim and
// persist children, all of service "aggregator"; the logs carry the trace id.
func TestTraceInJaeger(t *testing.T) {
	api, otlp := testdeps.JaegerURLs(t)

	bin := buildBinary(t)
	addr := freeAddr(t)
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "--addr", addr, "--data-dir", t.TempDir(), "--log-level", "debug")
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "OTEL_") })
	cmd.Env = append(env,
		"OTEL_EXPORTER_OTLP_ENDPOINT="+otlp,
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY=100", // export within a tenth of a second
	)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("aggregator output:\n%s", logs.String())
		}
	})
	c := newClient(t, "http://"+addr)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.http.Get(c.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("aggregator on %s not ready in 30 s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}

	traceID, parentID := randomHex(t, 16), randomHex(t, 8)
	body, _ := json.Marshal([]testEvent{ev("traced", "t-1"), ev("traced", "t-2"), ev("traced", "t-1")})
	req, _ := http.NewRequest(http.MethodPost, c.base+"/publish", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %d %s", resp.StatusCode, out)
	}

	// Poll Jaeger until the trace holds every span the test expects.
	want := []string{"POST /publish", "process batch", "claim", "persist", "mark done"}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tr, err := testdeps.PollTrace(ctx, api, traceID, 250*time.Millisecond, func(tr *testdeps.JaegerTrace) bool {
		return !slices.ContainsFunc(want, func(n string) bool { return len(tr.ByName(n)) == 0 })
	})
	if err != nil {
		t.Fatalf("Jaeger has no trace %s with spans %v after 30 s: %v", traceID, want, err)
	}

	byName := map[string]int{}
	for i, s := range tr.Spans {
		byName[s.OperationName] = i
		if svc := tr.Service(&s); svc != "aggregator" {
			t.Errorf("span %q of service %q, want aggregator", s.OperationName, svc)
		}
		if s.TraceID != traceID {
			t.Errorf("span %q in trace %s", s.OperationName, s.TraceID)
		}
	}
	parentOf := func(name string) string { return tr.Spans[byName[name]].Parent() }
	pub := tr.Spans[byName["POST /publish"]]
	batch := tr.Spans[byName["process batch"]]
	if got := parentOf("POST /publish"); got != parentID {
		t.Errorf("POST /publish parent %q, want the caller's span %s", got, parentID)
	}
	if k := pub.Tag("span.kind"); k != "server" {
		t.Errorf("POST /publish kind %q", k)
	}
	if got := parentOf("process batch"); got != pub.SpanID {
		t.Errorf("process batch parent %q, want the publish span %s", got, pub.SpanID)
	}
	for _, child := range []string{"claim", "persist", "mark done"} {
		if got := parentOf(child); got != batch.SpanID {
			t.Errorf("%s parent %q, want the batch span %s", child, got, batch.SpanID)
		}
	}
	if n := batch.Tag("messaging.batch.message_count"); n != "3" {
		t.Errorf("batch size tag %q, want 3", n)
	}
	if n := batch.Tag("aggregator.batch.duplicates"); n != "1" {
		t.Errorf("duplicates tag %q, want 1", n)
	}
	var dupEvent bool
	for _, l := range batch.Logs {
		if l.Field("aggregator.duplicate.reason") == "repeated in batch" && l.Field("aggregator.duplicate.count") == "1" {
			dupEvent = true
		}
	}
	if !dupEvent {
		t.Errorf("batch span lacks the duplicates event: %+v", batch.Logs)
	}

	// Probes are never traced.
	ops, err := testdeps.JaegerOperations(t.Context(), api, "aggregator")
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if strings.Contains(op, "/readyz") || strings.Contains(op, "/healthz") || strings.Contains(op, "/metrics") {
			t.Errorf("probe traced: operation %q", op)
		}
	}

	// The logs of the request carry its trace id.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("aggregator exited with %v", err)
	}
	stopped = true
	var dupLine, summary bool
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["trace_id"] != traceID {
			continue
		}
		switch rec["msg"] {
		case "duplicate dropped":
			dupLine = rec["level"] == "DEBUG" && rec["event_id"] == "t-1" && rec["why"] == "repeated in batch"
		case "batch processed":
			summary = rec["level"] == "INFO" && rec["duplicates"] == float64(1) && rec["unique"] == float64(2)
		}
	}
	if !dupLine || !summary {
		t.Errorf("logs with trace_id %s: duplicate line %v, batch summary %v", traceID, dupLine, summary)
	}
}
