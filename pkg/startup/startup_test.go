package startup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var fast = Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}

// syncBuffer is a log sink read while goroutines write to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for l := range strings.Lines(s.b.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// flaky fails until it is told to succeed, counting its attempts.
type flaky struct {
	attempts atomic.Int64
	ok       atomic.Bool
}

func (f *flaky) up(context.Context) error {
	f.attempts.Add(1)
	if f.ok.Load() {
		return nil
	}
	return errors.New("dial tcp 127.0.0.1:1: connection refused")
}

// waitUntil polls cond until it holds; the test fails after a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-time.After(time.Millisecond):
		}
	}
}

// TestRetryLogsTwice: many failed attempts give one line when the waiting
// starts and one when the dependency is up, none per retry.
func TestRetryLogsTwice(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	f := &flaky{}
	done := make(chan error, 1)
	go func() { done <- Retry(t.Context(), log, "postgres", fast, f.up) }()
	waitUntil(t, "20 attempts failed", func() bool { return f.attempts.Load() >= 20 })
	f.ok.Store(true)
	if err := <-done; err != nil {
		t.Fatalf("Retry: %v", err)
	}
	lines := logs.lines()
	if len(lines) != 2 {
		t.Fatalf("%d log lines over %d attempts, want 2: %v", len(lines), f.attempts.Load(), lines)
	}
	if lines[0]["msg"] != "waiting for postgres" || lines[0]["level"] != "WARN" ||
		!strings.Contains(lines[0]["err"].(string), "connection refused") {
		t.Errorf("first line %v, want a warning naming the error", lines[0])
	}
	if lines[1]["msg"] != "postgres ready" || lines[1]["attempts"].(float64) < 21 {
		t.Errorf("second line %v, want the ready line with the attempts", lines[1])
	}
}

// TestRetryStopsWithContext: an ended context ends the retries with an
// error naming the dependency and its last failure.
func TestRetryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	f := &flaky{}
	done := make(chan error, 1)
	go func() { done <- Retry(ctx, slog.New(slog.DiscardHandler), "kafka", fast, f.up) }()
	waitUntil(t, "an attempt failed", func() bool { return f.attempts.Load() >= 2 })
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "kafka") ||
		!strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v, want canceled, naming kafka and the last failure", err)
	}
}

// TestBackoffIsCappedAndJittered: the waits grow to the cap, never past it
// by more than the jitter, and are not all equal.
func TestBackoffIsCappedAndJittered(t *testing.T) {
	b := Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond}.exponential()
	seen := map[time.Duration]bool{}
	for range 50 {
		d := b.NextBackOff()
		if d < 5*time.Millisecond || d > 120*time.Millisecond {
			t.Fatalf("wait %v outside [Initial/2, Max*1.5]", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct waits in 50: no jitter", len(seen))
	}
	if def := (Backoff{}).exponential(); def.InitialInterval != DefaultInitial || def.MaxInterval != DefaultMax {
		t.Fatalf("zero Backoff: %v..%v, want the defaults", def.InitialInterval, def.MaxInterval)
	}
}

// TestDepsReadiness: each dependency is a check failing with its last
// error until it is up; one started after another waits for it; Require
// refuses with a clean 503 meanwhile.
func TestDepsReadiness(t *testing.T) {
	var logs syncBuffer
	d := New(slog.New(slog.NewJSONHandler(&logs, nil)), fast)
	pg, mig := &flaky{}, &flaky{}
	mig.ok.Store(true)
	d.Start(t.Context(), "postgres", pg.up)
	d.Start(t.Context(), "migrations", mig.up, "postgres")

	waitUntil(t, "postgres failed", func() bool { return pg.attempts.Load() >= 3 })
	checks := d.Checks()
	if len(checks) != 2 {
		t.Fatalf("%d checks, want 2", len(checks))
	}
	if err := checks["postgres"](t.Context()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("postgres check while down: %v, want the last error", err)
	}
	if err := checks["migrations"](t.Context()); err == nil || !strings.Contains(err.Error(), "waiting for postgres") {
		t.Fatalf("migrations check while postgres is down: %v", err)
	}
	if mig.attempts.Load() != 0 {
		t.Fatal("migrations ran before postgres was up")
	}
	if p := d.Pending(); len(p) != 2 {
		t.Fatalf("pending %v, want both", p)
	}

	h := d.Require(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) }),
		"migrations")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/publish", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Type") != "application/problem+json" ||
		rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "migrations") {
		t.Fatalf("request while not ready: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}

	d.Note("postgres", "dialling")
	if err := checks["postgres"](t.Context()); err == nil || (err.Error() != "dialling" && !strings.Contains(err.Error(), "connection refused")) {
		t.Fatalf("postgres check after a note: %v", err)
	}
	pg.ok.Store(true)
	if err := d.Wait(t.Context()); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	for name, check := range d.Checks() {
		if err := check(t.Context()); err != nil {
			t.Fatalf("%s check once up: %v", name, err)
		}
	}
	if p := d.Pending(); len(p) != 0 {
		t.Fatalf("pending %v once up", p)
	}
	d.Note("postgres", "a note once up")
	if err := d.Check("postgres")(t.Context()); err != nil {
		t.Fatalf("a note turned an up dependency down: %v", err)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/publish", nil))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("request once ready: %d", rec.Code)
	}
	var msgs []string
	for _, l := range logs.lines() {
		msgs = append(msgs, l["msg"].(string))
	}
	want := []string{"waiting for postgres", "postgres ready", "migrations ready"}
	if strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Fatalf("log lines %q, want %q", msgs, want)
	}
}

// TestDepsStopped: a dependency that never came up reports so once the
// process stops, and Wait returns the context's error.
func TestDepsStopped(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	d := New(slog.New(slog.DiscardHandler), fast)
	redis := &flaky{}
	d.Start(ctx, "redis", redis.up)
	waitUntil(t, "redis failed", func() bool { return redis.attempts.Load() >= 1 })
	wctx, wcancel := context.WithCancel(t.Context())
	wcancel()
	if err := d.Wait(wctx, "redis"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with an ended context: %v", err)
	}
	if err := d.Wait(t.Context(), "nope"); err == nil {
		t.Fatal("Wait for an unknown dependency succeeded")
	}
	cancel()
	waitUntil(t, "redis reported stopped", func() bool {
		err := d.Check("redis")(t.Context())
		return err != nil && strings.Contains(err.Error(), "stopped")
	})
	n := redis.attempts.Load()
	if err := d.Check("redis")(t.Context()); err == nil {
		t.Fatal("a stopped dependency reports ready")
	}
	if redis.attempts.Load() != n {
		t.Fatal("attempts went on after the context ended")
	}
}

// TestCheckThenAndBounded: the combined check reports the start-up state,
// then the live one; Bounded gives each attempt a deadline.
func TestCheckThenAndBounded(t *testing.T) {
	d := New(slog.New(slog.DiscardHandler), fast)
	kafka := &flaky{}
	d.Start(t.Context(), "kafka", kafka.up)
	liveErr := errors.New("broker gone")
	var live atomic.Pointer[error]
	check := d.CheckThen("kafka", func(context.Context) error {
		if p := live.Load(); p != nil {
			return *p
		}
		return nil
	})
	waitUntil(t, "kafka failed", func() bool { return kafka.attempts.Load() >= 1 })
	live.Store(&liveErr)
	if err := check(t.Context()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("before kafka is up: %v, want the start-up error", err)
	}
	kafka.ok.Store(true)
	if err := d.Wait(t.Context(), "kafka"); err != nil {
		t.Fatal(err)
	}
	if err := check(t.Context()); !errors.Is(err, liveErr) {
		t.Fatalf("once up: %v, want the live check's error", err)
	}
	live.Store(nil)
	if err := check(t.Context()); err != nil {
		t.Fatalf("once up and live: %v", err)
	}

	err := Bounded(time.Millisecond, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })(t.Context())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Bounded: %v, want a deadline", err)
	}
}
