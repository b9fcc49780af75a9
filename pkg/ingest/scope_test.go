package ingest

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/problem"
)

func onTopic(topic, id string) string {
	return `{"topic":"` + topic + `","event_id":"` + id + `","timestamp":"2026-11-25T10:00:00Z","source":"s"}`
}

// post sends body as the key of grant g (nil: no key) and decodes a problem.
func post(t *testing.T, h http.Handler, g *auth.Grant, body string) (*httptest.ResponseRecorder, problem.Details) {
	t.Helper()
	req := httptest.NewRequest("POST", "/publish", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if g != nil {
		req = req.WithContext(auth.WithGrant(req.Context(), g))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var p problem.Details
	if rec.Code >= 400 {
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%d without a problem body: %s", rec.Code, rec.Body)
		}
	}
	return rec, p
}

// TestPublishBeyondTopicsIs403: a key limited to some topics publishes
// nothing when one event of the body is outside them.
func TestPublishBeyondTopicsIs403(t *testing.T) {
	pub := &recorder{}
	h := handler(pub)
	shop := &auth.Grant{Name: "shop", Publish: true, Prefixes: []string{"orders."}}
	rec, p := post(t, h, shop, "["+onTopic("orders.eu", "a")+","+onTopic("billing", "b")+","+onTopic("orders", "c")+"]")
	if rec.Code != http.StatusForbidden {
		t.Fatalf("status %d, want 403: %s", rec.Code, rec.Body)
	}
	if len(p.Errors) != 2 || p.Errors[0].Index != 1 || p.Errors[1].Index != 2 || p.Errors[0].Field != "topic" {
		t.Errorf("errors %+v, want events 1 and 2, field topic", p.Errors)
	}
	if pub.calls != 0 {
		t.Errorf("publisher called %d times", pub.calls)
	}
	if rec, _ := post(t, h, shop, onTopic("orders.eu", "a")); rec.Code != http.StatusAccepted || pub.calls != 1 {
		t.Errorf("allowed topic: %d, %d calls", rec.Code, pub.calls)
	}
}

func rateHandler(pub Publisher, rl RateLimit, reg prometheus.Registerer) http.Handler {
	return New(pub, Options{
		MaxBodyBytes: 1 << 16,
		Limits:       event.Limits{MaxEvents: 100, MaxPayloadBytes: 512},
		Timeout:      time.Second,
		Rate:         rl,
		Registerer:   reg,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
}

func batch(n int, prefix string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = onTopic("t", prefix+strconv.Itoa(i))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// TestRateLimitPerKey: a key past its burst gets 429 with Retry-After and
// nothing is published; another key has its own bucket; the refusals are
// counted in the metrics. The rate is so low that no token comes back
// during the test.
func TestRateLimitPerKey(t *testing.T) {
	pub := &recorder{}
	reg := prometheus.NewRegistry()
	h := rateHandler(pub, RateLimit{EventsPerSecond: 0.01, Burst: 10}, reg)
	a := &auth.Grant{Name: "a", Publish: true}
	b := &auth.Grant{Name: "b", Publish: true}

	if rec, _ := post(t, h, a, batch(8, "a")); rec.Code != http.StatusAccepted {
		t.Fatalf("first batch: %d %s", rec.Code, rec.Body)
	}
	rec, _ := post(t, h, a, batch(3, "x"))
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("over the burst: %d %s, want 429", rec.Code, rec.Body)
	}
	// One event short of 3 at 0.01/s: about 100 s.
	if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || s < 90 || s > 101 {
		t.Errorf("Retry-After %q, want about 100 s", rec.Header().Get("Retry-After"))
	}
	// A refused request spends nothing: two events still fit.
	if rec, _ := post(t, h, a, batch(2, "y")); rec.Code != http.StatusAccepted {
		t.Errorf("within what is left: %d %s", rec.Code, rec.Body)
	}
	if rec, _ := post(t, h, b, batch(10, "b")); rec.Code != http.StatusAccepted {
		t.Errorf("another key: %d %s", rec.Code, rec.Body)
	}
	if rec, _ := post(t, h, b, batch(11, "c")); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("more than the burst at once: %d, want 413", rec.Code)
	}
	if len(pub.events) != 20 {
		t.Errorf("%d events published, want 20", len(pub.events))
	}
	want := `
# HELP aggregator_rate_limited_events_total Events in publish requests refused with 429 by the rate limit, by API key name.
# TYPE aggregator_rate_limited_events_total counter
aggregator_rate_limited_events_total{key="a"} 3
# HELP aggregator_rate_limited_requests_total Publish requests refused with 429 by the rate limit, by API key name.
# TYPE aggregator_rate_limited_requests_total counter
aggregator_rate_limited_requests_total{key="a"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// TestRateLimitWithoutKeys: without keys every client shares one bucket,
// and the default burst is one second of the rate, at least one event.
func TestRateLimitWithoutKeys(t *testing.T) {
	h := rateHandler(&recorder{}, RateLimit{EventsPerSecond: 0.01}, nil)
	if rec, _ := post(t, h, nil, batch(2, "a")); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("two events with a burst of one: %d, want 413", rec.Code)
	}
	if rec, _ := post(t, h, nil, batch(1, "b")); rec.Code != http.StatusAccepted {
		t.Fatalf("first: %d", rec.Code)
	}
	if rec, _ := post(t, h, nil, batch(1, "c")); rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Errorf("second: %d, Retry-After %q; want 429 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
}
