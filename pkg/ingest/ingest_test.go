package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/problem"
)

type recorder struct {
	mu     sync.Mutex
	calls  int
	events []event.Event
	err    error
}

func (r *recorder) Publish(_ context.Context, events []event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.err != nil {
		return r.err
	}
	r.events = append(r.events, events...)
	return nil
}

const ev = `{"topic":"t","event_id":"%s","timestamp":"2026-11-25T10:00:00Z","source":"s"}`

func one(id string) string { return strings.Replace(ev, "%s", id, 1) }

func handler(pub Publisher) http.Handler {
	return New(pub, Options{
		MaxBodyBytes: 4096,
		Limits:       event.Limits{MaxEvents: 5, MaxPayloadBytes: 512},
		Timeout:      time.Second,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

// TestPublishStatusCodes: each rule of openapi.json gets its status code, and
// a refused request reaches the Publisher not at all.
func TestPublishStatusCodes(t *testing.T) {
	cases := []struct {
		name, ctype, body string
		want              int
		accepted          int
	}{
		{"single", "application/json", one("a"), 202, 1},
		{"array", "application/json; charset=utf-8", "[" + one("a") + "," + one("b") + "]", 202, 2},
		{"envelope", "application/json", `{"events":[` + one("a") + `]}`, 202, 1},
		{"ndjson", "application/x-ndjson", one("a") + "\n" + one("b"), 202, 2},
		{"no content type", "", one("a"), 202, 1},
		{"duplicate in batch still accepted", "application/json", "[" + one("a") + "," + one("a") + "]", 202, 2},
		{"malformed", "application/json", `{"topic":`, 400, 0},
		{"invalid utf-8", "application/json", "[{\"topic\":\"\xc3\x28\"}]", 400, 0},
		{"text/plain", "text/plain", one("a"), 415, 0},
		{"form", "application/x-www-form-urlencoded", "a=b", 415, 0},
		{"bad media type", "application/json; =", one("a"), 415, 0},
		{"invalid event", "application/json", "[" + one("a") + `,{"topic":"t"}]`, 422, 0},
		{"too many events", "application/json", "[" + strings.Repeat(one("a")+",", 5) + one("b") + "]", 413, 0},
		{"body too large", "application/json", `{"topic":"` + strings.Repeat("x", 5000) + `"}`, 413, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &recorder{}
			req := httptest.NewRequest(http.MethodPost, "/publish", strings.NewReader(c.body))
			if c.ctype != "" {
				req.Header.Set("Content-Type", c.ctype)
			}
			w := httptest.NewRecorder()
			handler(rec).ServeHTTP(w, req)
			if w.Code != c.want {
				t.Fatalf("status %d, want %d: %s", w.Code, c.want, w.Body)
			}
			if c.want == 202 {
				var got struct{ Accepted int }
				if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.Accepted != c.accepted {
					t.Errorf("body %s, want accepted=%d", w.Body, c.accepted)
				}
				if len(rec.events) != c.accepted {
					t.Errorf("publisher got %d events, want %d", len(rec.events), c.accepted)
				}
				return
			}
			if rec.calls != 0 {
				t.Errorf("a refused request reached the publisher")
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want application/problem+json", ct)
			}
			var p problem.Details
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != c.want || p.Detail == "" {
				t.Errorf("problem body %s (%v)", w.Body, err)
			}
			if c.want == 422 && (len(p.Errors) == 0 || p.Errors[0].Index != 1) {
				t.Errorf("422 without the bad item's index: %+v", p.Errors)
			}
		})
	}
}

func TestPublishUnavailable(t *testing.T) {
	rec := &recorder{err: errors.New("broker down")}
	req := httptest.NewRequest(http.MethodPost, "/publish", strings.NewReader(one("a")))
	w := httptest.NewRecorder()
	handler(rec).ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", w.Code)
	}
	if w.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

func TestEmptyBatchAcceptsNothing(t *testing.T) {
	for _, c := range []struct{ ctype, body string }{
		{"application/json", "[]"}, {"application/json", `{"events":[]}`}, {"application/x-ndjson", "\n"},
	} {
		rec := &recorder{}
		req := httptest.NewRequest(http.MethodPost, "/publish", strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.ctype)
		w := httptest.NewRecorder()
		handler(rec).ServeHTTP(w, req)
		if w.Code != http.StatusAccepted || !strings.Contains(w.Body.String(), `"accepted":0`) {
			t.Errorf("%q: %d %s, want 202 accepted 0", c.body, w.Code, w.Body)
		}
		if rec.calls != 0 {
			t.Errorf("%q: an empty batch reached the publisher", c.body)
		}
	}
}

// blocking holds every Publish until released.
type blocking struct{ release chan struct{} }

func (b blocking) Publish(ctx context.Context, _ []event.Event) error {
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestInflightBytesBounded: when the bodies held reach the budget, the next
// request waits its timeout and gets 503, nothing more is held in memory.
func TestInflightBytesBounded(t *testing.T) {
	pub := blocking{release: make(chan struct{})}
	body := "[" + one("a") + "]"
	h := New(pub, Options{
		MaxBodyBytes:     int64(len(body)) + 10,
		MaxInflightBytes: int64(len(body)) + 10,
		Limits:           event.Limits{MaxEvents: 5, MaxPayloadBytes: 512},
		Timeout:          2 * time.Second,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	first := make(chan int)
	go func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/publish", strings.NewReader(body)))
		first <- w.Code
	}()
	// The first request holds its bytes while the publisher blocks.
	deadline := time.Now().Add(5 * time.Second)
	for h.inflight.TryAcquire(int64(len(body))) {
		h.inflight.Release(int64(len(body)))
		if time.Now().After(deadline) {
			t.Fatal("the first request never reserved its bytes")
		}
		time.Sleep(time.Millisecond)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/publish", strings.NewReader(body)))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("second request: %d, want 503 with Retry-After", w.Code)
	}
	close(pub.release)
	if code := <-first; code != http.StatusServiceUnavailable && code != http.StatusAccepted {
		t.Fatalf("first request: %d", code)
	}
}
