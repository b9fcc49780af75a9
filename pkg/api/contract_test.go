package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/api"
	"github.com/event-aggregator/event-aggregator/pkg/api/apitest"
	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/console"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/ingest"
	"github.com/event-aggregator/event-aggregator/pkg/query"
)

// memStore keeps published events in memory, in order, once per key.
type memStore struct {
	mu     sync.Mutex
	events []event.Stored
	counts map[string]*event.Counts
}

func (m *memStore) Publish(_ context.Context, events []event.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counts == nil {
		m.counts = map[string]*event.Counts{}
	}
	for _, e := range events {
		c := m.counts[e.Topic]
		if c == nil {
			c = &event.Counts{Topic: e.Topic}
			m.counts[e.Topic] = c
		}
		c.Received++
		if slices.ContainsFunc(m.events, func(s event.Stored) bool { return s.Key() == e.Key() }) {
			c.Duplicates++
			continue
		}
		c.Unique++
		m.events = append(m.events, event.Stored{Event: e, Pos: event.Position{Seq: int64(len(m.events) + 1)},
			ProcessedAt: time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)})
	}
	return nil
}

func (m *memStore) Events(_ context.Context, topic string, after event.Position, limit int) ([]event.Stored, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []event.Stored
	for _, e := range m.events {
		if len(out) < limit && e.Pos.Compare(after) > 0 && (topic == "" || e.Topic == topic) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (m *memStore) Size(context.Context) (int64, int64, error) { return 0, 8192, nil }

func (m *memStore) Counts(context.Context) ([]event.Counts, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []event.Counts{}
	for _, c := range m.counts {
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b event.Counts) int { return strings.Compare(a.Topic, b.Topic) })
	return out, nil
}

const keys = `{"keys": [
	{"name": "admin", "key": "admin-key-0000001", "scope": "both"},
	{"name": "shop", "key": "shop-key-00000001", "scope": "publish", "topics": ["orders."]},
	{"name": "dash", "key": "dash-key-00000001", "scope": "read", "topics": ["orders."]}
]}`

// contractServer is a binary's full API over memory, with scoped keys and a
// rate limit, whose every response is checked against openapi.json.
func contractServer(t *testing.T) http.Handler {
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(path, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := auth.LoadKeys(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	store := &memStore{}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ready"}`))
	})
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_, _ = w.Write([]byte("x 1\n"))
	})
	return apitest.Handler(t, api.Handler(api.Routes{
		Publish: ingest.New(store, ingest.Options{
			MaxBodyBytes: 1 << 16, Limits: event.Limits{MaxEvents: 20, MaxPayloadBytes: 1024}, Timeout: time.Second,
			// So slow that no token comes back during the test.
			Rate: ingest.RateLimit{EventsPerSecond: 0.001, Burst: 12},
		}, log, nil),
		Query:   query.New(store, time.Now(), log),
		Ready:   ok,
		Metrics: metrics,
		Keys:    k,
		Console: console.New(console.Options{Engine: "sqlite", Store: store, Retention: 48 * time.Hour,
			RetentionTopics: map[string]time.Duration{"orders.eu": time.Hour, "clicks": 2 * time.Hour}}),
	}))
}

func ev(topic, id, extra string) string {
	return `{"topic":"` + topic + `","event_id":"` + id + `","timestamp":"2026-11-25T12:00:00.123456789+02:00","source":"s"` + extra + `}`
}

// TestEveryResponseMatchesTheDocument drives every endpoint through each
// status it documents; apitest fails the test on any response the document
// does not describe.
func TestEveryResponseMatchesTheDocument(t *testing.T) {
	h := contractServer(t)
	const admin, shop, dash = "admin-key-0000001", "shop-key-00000001", "dash-key-00000001"
	cases := []struct {
		name, method, target, key, ctype, body string
		want                                   int
	}{
		{"publish", "POST", "/publish", admin, "application/json",
			"[" + ev("orders.eu", "1", `,"payload":{ "a" : "<&>" }`) + "," + ev("clicks", "2", `,"payload":null`) + "]", 202},
		{"publish ndjson", "POST", "/publish", shop, "application/x-ndjson", ev("orders.us", "3", "") + "\n", 202},
		{"envelope", "POST", "/publish", admin, "application/json", `{"events":[` + ev("orders.eu", "4", "") + `]}`, 202},
		{"duplicate", "POST", "/publish", admin, "application/json", ev("orders.eu", "1", ""), 202},
		{"no key", "POST", "/publish", "", "application/json", ev("orders.eu", "5", ""), 401},
		{"read key publishing", "POST", "/publish", dash, "application/json", ev("orders.eu", "5", ""), 403},
		{"topic beyond the key", "POST", "/publish", shop, "application/json", ev("clicks", "5", ""), 403},
		{"not json", "POST", "/publish", admin, "application/json", `{"topic":`, 400},
		{"event and envelope", "POST", "/publish", admin, "application/json", `{"events":[],"topic":"t"}`, 400},
		{"lone surrogate", "POST", "/publish", admin, "application/json", ev(`a\ud800`, "6", ""), 422},
		{"duplicate field", "POST", "/publish", admin, "application/json", ev("t", "6", `,"source":"x"`), 422},
		{"wrong case", "POST", "/publish", admin, "application/json", ev("t", "6", `,"Payload":{}`), 422},
		{"too many events", "POST", "/publish", admin, "application/json", "[" + strings.Repeat(ev("t", "7", "")+",", 20) + ev("t", "8", "") + "]", 413},
		{"over the burst", "POST", "/publish", shop, "application/json", "[" + strings.Repeat(ev("orders.x", "9", "")+",", 12) + ev("orders.x", "9", "") + "]", 413},
		{"rate limited", "POST", "/publish", admin, "application/json", "[" + strings.Repeat(ev("t", "10", "")+",", 9) + ev("t", "10", "") + "]", 429},
		{"media type", "POST", "/publish", admin, "text/plain", "x", 415},
		{"events", "GET", "/events?limit=2", admin, "", "", 200},
		{"events of a topic", "GET", "/events?topic=orders.eu", dash, "", "", 200},
		{"events beyond the key", "GET", "/events?topic=clicks", dash, "", "", 403},
		{"events by a publish key", "GET", "/events", shop, "", "", 403},
		{"bad cursor", "GET", "/events?cursor=!!", admin, "", "", 400},
		{"bad limit", "GET", "/events?limit=0", admin, "", "", 400},
		{"events no key", "GET", "/events", "", "", "", 401},
		{"stats", "GET", "/stats", dash, "", "", 200},
		{"stats by a publish key", "GET", "/stats", shop, "", "", 403},
		{"topics", "GET", "/topics", admin, "", "", 200},
		{"topics no key", "GET", "/topics", "", "", "", 401},
		{"healthz", "GET", "/healthz", "", "", "", 200},
		{"readyz", "GET", "/readyz", "", "", "", 200},
		{"metrics", "GET", "/metrics", "", "", "", 200},
		{"openapi", "GET", "/openapi.json", "", "", "", 200},
		{"console", "GET", "/", "", "", "", 200},
		{"console script", "GET", "/console/app.js", "", "", "", 200},
		{"console style", "GET", "/console/app.css", "", "", "", 200},
		{"console info", "GET", "/console/info", dash, "", "", 200},
		{"console info no key", "GET", "/console/info", "", "", "", 401},
		{"console info by a publish key", "GET", "/console/info", shop, "", "", 403},
		{"no such path", "GET", "/nope", "", "", "", 404},
		{"no such method", "DELETE", "/events", admin, "", "", 405},
	}
	for _, c := range cases {
		req := httptest.NewRequest(c.method, c.target, strings.NewReader(c.body))
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s: %s %s → %d %s, want %d", c.name, c.method, c.target, rec.Code, rec.Body, c.want)
		}
	}
}

// TestEventsAsPublished: through the whole API, the payload comes back byte
// for byte and the timestamp in UTC, cut to microseconds; a key limited to
// some topics sees only them in /events and /stats.
func TestEventsAsPublished(t *testing.T) {
	h := contractServer(t)
	do := func(method, target, key, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	payload := "{ \"html\": \"<b>&</b>\",\n  \"n\": 1.50, \"n\": 2 }"
	body := "[" + ev("orders.eu", "1", `,"payload":`+payload) + "," + ev("clicks", "2", "") + "]"
	if rec := do("POST", "/publish", "admin-key-0000001", body); rec.Code != 202 {
		t.Fatalf("publish: %d %s", rec.Code, rec.Body)
	}
	rec := do("GET", "/events", "dash-key-00000001", "")
	if !strings.Contains(rec.Body.String(), `"payload":`+payload) {
		t.Errorf("payload not byte for byte:\n%s", rec.Body)
	}
	var page struct {
		Events []struct {
			Topic     string `json:"topic"`
			Timestamp string `json:"timestamp"`
		} `json:"events"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil || len(page.Events) != 1 {
		t.Fatalf("page %s: %v", rec.Body, err)
	}
	if page.Events[0].Topic != "orders.eu" || page.Events[0].Timestamp != "2026-11-25T10:00:00.123456Z" {
		t.Errorf("event %+v, want orders.eu at 2026-11-25T10:00:00.123456Z", page.Events[0])
	}
	var stats query.Stats
	if err := json.Unmarshal(do("GET", "/stats", "dash-key-00000001", "").Body.Bytes(), &stats); err != nil ||
		stats.Received != 1 || !slices.Equal(stats.Topics, []string{"orders.eu"}) {
		t.Errorf("stats %+v %v, want orders.eu only", stats, err)
	}
}

// TestCheckerCatchesDrift: the check is not vacuous.
func TestCheckerCatchesDrift(t *testing.T) {
	c, err := apitest.New()
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	for _, r := range []struct {
		method, target string
		status         int
		body           string
	}{
		{"GET", "/stats", 200, `{"received":"1"}`},
		{"GET", "/stats", 418, `{}`},
		{"GET", "/events", 200, `{"count":1,"events":[{"topic":"t","event_id":"x","timestamp":"2026-11-25T10:00:00+01:00","source":"s","payload":{},"processed_at":"2026-11-25T10:00:00Z"}]}`},
		{"GET", "/events", 200, `{"count":0,"events":[],"next_cursor":"a b"}`},
		{"POST", "/publish", 202, `{"accepted":1,"extra":true}`},
	} {
		req := httptest.NewRequest(r.method, r.target, nil)
		if err := c.Check(req, r.status, h, []byte(r.body)); err == nil {
			t.Errorf("%s %s → %d %s passed the check", r.method, r.target, r.status, r.body)
		}
	}
	body, _ := io.ReadAll(strings.NewReader(`{"received":1,"unique_processed":1,"duplicate_dropped":0,"topics":["t"],"uptime":1.5,"started_at":"2026-11-25T10:00:00Z"}`))
	if err := c.Check(httptest.NewRequest("GET", "/stats", nil), 200, h, body); err != nil {
		t.Errorf("a good /stats failed: %v", err)
	}
}
