package query

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// fakeReader serves events kept in position order and fixed counters.
type fakeReader struct {
	events []event.Stored
	counts []event.Counts
	err    error
}

func (f *fakeReader) Events(_ context.Context, topic string, after event.Position, limit int) ([]event.Stored, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []event.Stored
	for _, e := range f.events {
		if len(out) == limit {
			break
		}
		if e.Pos.Compare(after) > 0 && (topic == "" || e.Topic == topic) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeReader) Counts(context.Context) ([]event.Counts, error) {
	return f.counts, f.err
}

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// stored returns n events over topics a and b, whose positions mix
// transaction and sequence parts the way Postgres hands them out.
func stored(n int) []event.Stored {
	out := make([]event.Stored, n)
	for i := range out {
		out[i] = event.Stored{
			Event: event.Event{
				Topic: []string{"a", "b"}[i%2], EventID: fmt.Sprint("e", i), Timestamp: t0.Add(time.Duration(i) * time.Second),
				Source: "s", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
			},
			// Every third event starts a new transaction; seq is not monotonic
			// across them, as when a later insert commits first.
			Pos:         event.Position{Tx: int64(100 + i/3), Seq: int64(1000 - 10*(i/3) + i%3)},
			ProcessedAt: t0,
		}
	}
	return out
}

func serve(t *testing.T, h http.HandlerFunc, target string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec
}

type page struct {
	Count      int         `json:"count"`
	Events     []eventJSON `json:"events"`
	NextCursor *string     `json:"next_cursor"`
}

func getPage(t *testing.T, h *Handlers, query string) page {
	t.Helper()
	rec := serve(t, h.Events, "/events?"+query)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /events?%s: %d %s", query, rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var p page
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	if p.Count != len(p.Events) {
		t.Errorf("count %d for %d events", p.Count, len(p.Events))
	}
	if p.Events == nil {
		t.Errorf("events is null, want an array: %s", rec.Body)
	}
	return p
}

func TestEventsBadParameters(t *testing.T) {
	h := New(&fakeReader{events: stored(3)}, t0, nil)
	cur := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, q := range []string{
		"limit=0", "limit=1001", "limit=-1", "limit=x", "limit=1.5", "limit=%20", "limit=99999999999999999999",
		"cursor=nope!", "cursor=" + strings.Repeat("A", 10), "cursor=" + cur("v2:1"), "cursor=" + cur("v2:1:2:3"),
		"cursor=" + cur("v2:-1:5"), "cursor=" + cur("v2:1:-5"), "cursor=" + cur("v1:-5"), "cursor=" + cur("v2:+1:5"),
		"cursor=" + cur("v2::5"), "cursor=" + cur("v2:1:"), "cursor=" + cur("v3:1:2"), "cursor=" + cur("v2:1:9223372036854775808"),
		"cursor=" + cur("v2: 1:2"), "cursor=" + cur("v1:0x10"),
		"cursor=" + base64.StdEncoding.EncodeToString([]byte("v2:1:2")) + "%3D", // padded, not the URL alphabet we issue
		"topic=" + strings.Repeat("t", event.MaxNameBytes+1),
	} {
		rec := serve(t, h.Events, "/events?"+q)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, rec.Code)
			continue
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", q, ct)
		}
	}
	// An empty cursor is no cursor: the first page.
	for _, q := range []string{"limit=1", "limit=1000", "cursor=", "cursor=" + cur("v2:0:0"), "cursor=" + cur("v1:7"),
		"cursor=" + cur("v2:9223372036854775807:9223372036854775807"), "topic=" + strings.Repeat("t", event.MaxNameBytes)} {
		if rec := serve(t, h.Events, "/events?"+q); rec.Code != http.StatusOK {
			t.Errorf("%s: status %d, want 200: %s", q, rec.Code, rec.Body)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, p := range []event.Position{{}, {Tx: 0, Seq: 42}, {Tx: 1 << 40, Seq: 7}, {Tx: 1<<63 - 1, Seq: 1<<63 - 1}} {
		got, ok := decodeCursor(encodeCursor(p))
		if !ok || got != p {
			t.Errorf("decode(encode(%v)) = %v, %v", p, got, ok)
		}
	}
	// A cursor issued before positions had a transaction part.
	v1 := base64.RawURLEncoding.EncodeToString([]byte("v1:123"))
	if got, ok := decodeCursor(v1); !ok || got != (event.Position{Seq: 123}) {
		t.Errorf("v1 cursor decoded to %v, %v", got, ok)
	}
}

func TestEventsPagesCoverEveryEventOnce(t *testing.T) {
	all := stored(23)
	h := New(&fakeReader{events: all}, t0, nil)
	for _, topic := range []string{"", "a", "b", "none"} {
		for _, limit := range []int{1, 2, 3, 11, 23, 1000} {
			seen := map[string]int{}
			q := url.Values{"limit": {fmt.Sprint(limit)}}
			if topic != "" {
				q.Set("topic", topic)
			}
			for pages := 0; ; pages++ {
				if pages > len(all)+1 {
					t.Fatalf("topic %q limit %d: paging does not end", topic, limit)
				}
				p := getPage(t, h, q.Encode())
				if len(p.Events) > limit {
					t.Fatalf("topic %q limit %d: page of %d", topic, limit, len(p.Events))
				}
				for _, e := range p.Events {
					if topic != "" && e.Topic != topic {
						t.Errorf("topic %q: got an event of %q", topic, e.Topic)
					}
					seen[e.EventID]++
				}
				if p.NextCursor == nil {
					break
				}
				if *p.NextCursor == "" || len(p.Events) != limit {
					t.Fatalf("topic %q limit %d: next_cursor %q after a page of %d", topic, limit, *p.NextCursor, len(p.Events))
				}
				q.Set("cursor", *p.NextCursor)
			}
			want := 0
			for _, e := range all {
				if topic == "" || e.Topic == topic {
					want++
					if seen[e.EventID] != 1 {
						t.Errorf("topic %q limit %d: %s served %d times", topic, limit, e.EventID, seen[e.EventID])
					}
				}
			}
			if len(seen) != want {
				t.Errorf("topic %q limit %d: %d distinct events, want %d", topic, limit, len(seen), want)
			}
		}
	}
}

func TestEventsLastPageHasNoCursor(t *testing.T) {
	h := New(&fakeReader{events: stored(4)}, t0, nil)
	rec := serve(t, h.Events, "/events?limit=4")
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "next_cursor") {
		t.Errorf("exactly one full page: %d %s; want 200 without next_cursor", rec.Code, rec.Body)
	}
	p := getPage(t, h, "limit=3")
	if p.NextCursor == nil {
		t.Fatal("first of two pages has no next_cursor")
	}
	if p = getPage(t, h, "limit=3&cursor="+*p.NextCursor); len(p.Events) != 1 || p.NextCursor != nil {
		t.Errorf("last page: %d events, next_cursor %v", len(p.Events), p.NextCursor)
	}

	empty := New(&fakeReader{}, t0, nil)
	rec = serve(t, empty.Events, "/events")
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"count":0,"events":[]}` {
		t.Errorf("empty store: %d %s", rec.Code, rec.Body)
	}
}

func TestEventsShape(t *testing.T) {
	h := New(&fakeReader{events: stored(1)}, t0, nil)
	rec := serve(t, h.Events, "/events")
	var body struct {
		Count  int
		Events []map[string]json.RawMessage
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Events) != 1 {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	want := map[string]string{
		"topic": `"a"`, "event_id": `"e0"`, "timestamp": `"2026-11-25T10:00:00Z"`, "source": `"s"`,
		"payload": `{"i":0}`, "processed_at": `"2026-11-25T10:00:00Z"`,
	}
	for k, v := range want {
		if got := string(body.Events[0][k]); got != v {
			t.Errorf("%s = %s, want %s", k, got, v)
		}
	}
	if len(body.Events[0]) != len(want) {
		t.Errorf("event fields %v, want exactly %v", body.Events[0], want)
	}
}

// A value json cannot encode gets a 500 problem, not a 200 with a cut body.
func TestEventsEncodeErrorIs500(t *testing.T) {
	evs := stored(2)
	evs[1].Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	h := New(&fakeReader{events: evs}, t0, nil)
	rec := serve(t, h.Events, "/events")
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q", ct)
	}
	var p struct{ Status int }
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != 500 {
		t.Errorf("body %s: %v", rec.Body, err)
	}
}

func TestReadErrorIs503(t *testing.T) {
	h := New(&fakeReader{err: errors.New("down")}, t0, nil)
	for path, f := range map[string]http.HandlerFunc{"/events": h.Events, "/stats": h.Stats, "/topics": h.Topics} {
		rec := serve(t, f, path)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s: %d, Retry-After %q; want 503 with Retry-After", path, rec.Code, rec.Header().Get("Retry-After"))
		}
	}
}

func TestStatsSumsAndSortsTopics(t *testing.T) {
	started := time.Now().Add(-90 * time.Second)
	h := New(&fakeReader{counts: []event.Counts{
		{Topic: "orders", Received: 10, Unique: 7, Duplicates: 3},
		{Topic: "Orders", Received: 2, Unique: 2},
		{Topic: "clicks", Received: 5, Unique: 1, Duplicates: 4},
	}}, started, nil)
	rec := serve(t, h.Stats, "/stats")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var s Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	if s.Received != 17 || s.Unique != 10 || s.Duplicates != 7 {
		t.Errorf("totals %d/%d/%d, want 17/10/7", s.Received, s.Unique, s.Duplicates)
	}
	if fmt.Sprint(s.Topics) != "[Orders clicks orders]" {
		t.Errorf("topics %q, want byte order", s.Topics)
	}
	if s.Uptime < 89 || s.Uptime > 600 || !s.StartedAt.Equal(started.Truncate(0)) {
		t.Errorf("uptime %v, started_at %v", s.Uptime, s.StartedAt)
	}

	rec = serve(t, New(&fakeReader{}, started, nil).Stats, "/stats")
	if !strings.Contains(rec.Body.String(), `"topics":[]`) || !strings.Contains(rec.Body.String(), `"received":0`) {
		t.Errorf("empty store: %s", rec.Body)
	}
}

func TestTopicsShape(t *testing.T) {
	h := New(&fakeReader{counts: []event.Counts{{Topic: "a", Received: 3, Unique: 2, Duplicates: 1}}}, t0, nil)
	rec := serve(t, h.Topics, "/topics")
	want := `{"topics":[{"topic":"a","received":3,"unique_processed":2,"duplicate_dropped":1}]}`
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != want {
		t.Errorf("got %d %s, want %s", rec.Code, rec.Body, want)
	}
	rec = serve(t, New(&fakeReader{}, t0, nil).Topics, "/topics")
	if strings.TrimSpace(rec.Body.String()) != `{"topics":[]}` {
		t.Errorf("empty store: %s", rec.Body)
	}
}

// TestEventsPayloadAsPublished: the payload comes back byte for byte,
// spacing, key order, repeated keys and <, >, & included.
func TestEventsPayloadAsPublished(t *testing.T) {
	evs := stored(2)
	payload := "{ \"html\" : \"<b>&amp;</b>\",\n\t\"a\":[1, 2.50, 1e400], \"a\" : \"\\u00e9\\ud83d\\ude00\" }"
	evs[1].Payload = json.RawMessage(payload)
	h := New(&fakeReader{events: evs}, t0, nil)
	rec := serve(t, h.Events, "/events")
	if !strings.Contains(rec.Body.String(), `"payload":`+payload+`}`) {
		t.Fatalf("payload not kept as stored:\n%s\nwant it to hold\n%s", rec.Body, payload)
	}
	if !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("body is not JSON: %s", rec.Body)
	}
	if p := getPage(t, h, ""); p.Count != 2 || p.Events[0].EventID != "e0" || p.Events[1].Source != "s" {
		t.Errorf("page %+v", p)
	}
}
