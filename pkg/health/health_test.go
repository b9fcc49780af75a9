package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestReady(t *testing.T) {
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	slow := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

	rec := httptest.NewRecorder()
	Ready(time.Second, map[string]Check{"a": ok, "b": ok}).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("all checks pass: %d", rec.Code)
	}

	rec = httptest.NewRecorder()
	Ready(50*time.Millisecond, map[string]Check{"a": ok, "db": down, "kafka": slow}).
		ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	var body struct{ Failed map[string]string }
	if rec.Code != http.StatusServiceUnavailable || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
		t.Fatalf("failing checks: %d %s", rec.Code, rec.Body)
	}
	if len(body.Failed) != 2 || body.Failed["db"] == "" || body.Failed["kafka"] == "" {
		t.Fatalf("failed = %v, want db and kafka", body.Failed)
	}
}

func TestLiveChecksNothing(t *testing.T) {
	rec := httptest.NewRecorder()
	Live().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("%d", rec.Code)
	}
}

// TestDrain: readiness turns false once draining begins, with the reason in
// the body, while liveness is untouched.
func TestDrain(t *testing.T) {
	var d Drain
	ready := Ready(time.Second, map[string]Check{"shutdown": d.Check})
	rec := httptest.NewRecorder()
	ready.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("before draining: %d", rec.Code)
	}
	d.Begin()
	rec = httptest.NewRecorder()
	ready.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	var body struct{ Failed map[string]string }
	if rec.Code != http.StatusServiceUnavailable || json.Unmarshal(rec.Body.Bytes(), &body) != nil ||
		body.Failed["shutdown"] != "shutting down" {
		t.Fatalf("draining: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	Live().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("liveness while draining: %d", rec.Code)
	}
}
