package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestHonoursRetryAfterOn429: a rate-limited publish (429 with Retry-After)
// is retried after the server's wait, not the client's own backoff, which
// here is so long that the test would time out on it.
func TestHonoursRetryAfterOn429(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"type":"about:blank","title":"Too Many Requests","status":429}`))
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	s := &sender{client: srv.Client(), url: srv.URL, contentType: "application/json", timeout: 10 * time.Second,
		policy: retryPolicy{retries: 3, base: time.Hour}, clock: realClock{}}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tl := newTally()
	n, err := s.send(ctx, []byte(`[]`), tl, time.Time{})
	if err != nil || n != 2 {
		t.Fatalf("send: %d attempts, %v; want 2 attempts and success", n, err)
	}
	if tl.responses["429"] != 1 || tl.responses["202"] != 1 {
		t.Errorf("responses %v, want one 429 then one 202", tl.responses)
	}
}
