package query

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// as serves target with the grant g.
func as(h http.HandlerFunc, g *auth.Grant, target string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req = req.WithContext(auth.WithGrant(req.Context(), g))
	rec := httptest.NewRecorder()
	h(rec, req)
	return rec
}

// pageAll follows the cursors as g and returns how often each id was served.
func pageAll(t *testing.T, h *Handlers, g *auth.Grant, q url.Values) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		rec := as(h.Events, g, "/events?"+q.Encode())
		var p page
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &p) != nil {
			t.Fatalf("GET /events?%s: %d %s", q.Encode(), rec.Code, rec.Body)
		}
		for _, e := range p.Events {
			if !g.Topic(e.Topic) {
				t.Fatalf("served %s of topic %q, which the key may not read", e.EventID, e.Topic)
			}
			seen[e.EventID]++
		}
		if p.NextCursor == nil {
			return seen
		}
		q.Set("cursor", *p.NextCursor)
	}
}

// TestEventsOnlyReadableTopics: a key limited to topic prefixes pages
// through exactly the events of its topics, once each, at any page size.
func TestEventsOnlyReadableTopics(t *testing.T) {
	all := stored(23)
	h := New(&fakeReader{events: all}, t0, nil)
	g := &auth.Grant{Name: "a-only", Read: true, Prefixes: []string{"a"}}
	for _, limit := range []int{1, 2, 5, 12, 1000} {
		seen := pageAll(t, h, g, url.Values{"limit": {fmt.Sprint(limit)}})
		for _, e := range all {
			if want := map[bool]int{true: 1}[e.Topic == "a"]; seen[e.EventID] != want {
				t.Errorf("limit %d: %s of %q served %d times, want %d", limit, e.EventID, e.Topic, seen[e.EventID], want)
			}
		}
	}
	if rec := as(h.Events, g, "/events?topic=b"); rec.Code != http.StatusForbidden ||
		rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("topic beyond the key: %d %s, want 403 problem", rec.Code, rec.Body)
	}
	if rec := as(h.Events, g, "/events?topic=a"); rec.Code != http.StatusOK {
		t.Errorf("topic of the key: %d", rec.Code)
	}
}

// TestEventsScanIsBounded: a key whose topics are rare among many events
// gets short pages with a cursor rather than one request reading the
// whole store, and still sees every event of its topics.
func TestEventsScanIsBounded(t *testing.T) {
	all := make([]event.Stored, 2*maxScan+7)
	for i := range all {
		all[i] = event.Stored{Event: event.Event{Topic: "noise", EventID: fmt.Sprint("n", i),
			Timestamp: t0, Source: "s", Payload: json.RawMessage(`{}`)}, Pos: event.Position{Seq: int64(i + 1)}}
	}
	all[3].Topic, all[len(all)-1].Topic = "rare", "rare"
	r := &countingReader{fakeReader: fakeReader{events: all}}
	h := New(r, t0, nil)
	g := &auth.Grant{Name: "rare", Read: true, Prefixes: []string{"rare"}}
	seen := pageAll(t, h, g, url.Values{"limit": {"10"}})
	if len(seen) != 2 || seen[all[3].EventID] != 1 || seen[all[len(all)-1].EventID] != 1 {
		t.Errorf("served %v, want the two rare events", seen)
	}
	if r.most > maxScan+maxLimit+1 {
		t.Errorf("one request read %d rows, more than %d", r.most, maxScan+maxLimit+1)
	}
}

// countingReader records the most rows one request read (one at a time).
type countingReader struct {
	fakeReader
	cur, most int
}

func (c *countingReader) Events(ctx context.Context, topic string, after event.Position, limit int) ([]event.Stored, error) {
	rows, err := c.fakeReader.Events(ctx, topic, after, limit)
	c.cur += len(rows)
	if len(rows) < limit || c.cur >= maxScan {
		c.most, c.cur = max(c.most, c.cur), 0
	}
	return rows, err
}

func TestStatsAndTopicsOnlyReadable(t *testing.T) {
	h := New(&fakeReader{counts: []event.Counts{
		{Topic: "orders.eu", Received: 10, Unique: 7, Duplicates: 3},
		{Topic: "clicks", Received: 5, Unique: 1, Duplicates: 4},
		{Topic: "orders.us", Received: 2, Unique: 2},
	}}, t0, nil)
	g := &auth.Grant{Name: "o", Read: true, Prefixes: []string{"orders."}}
	var s Stats
	if err := json.Unmarshal(as(h.Stats, g, "/stats").Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Received != 12 || s.Unique != 9 || s.Duplicates != 3 || fmt.Sprint(s.Topics) != "[orders.eu orders.us]" {
		t.Errorf("stats %+v, want orders.* only", s)
	}
	var tp struct{ Topics []event.Counts }
	if err := json.Unmarshal(as(h.Topics, g, "/topics").Body.Bytes(), &tp); err != nil || len(tp.Topics) != 2 || tp.Topics[1].Topic != "orders.us" {
		t.Errorf("topics %+v %v", tp, err)
	}
	none := &auth.Grant{Name: "none", Read: true, Prefixes: []string{"zzz"}}
	if rec := as(h.Topics, none, "/topics"); rec.Body.String() != "{\"topics\":[]}\n" {
		t.Errorf("no readable topic: %s", rec.Body)
	}
}
