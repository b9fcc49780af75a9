package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// scenarioTimeout bounds each scenario, its stack start included.
const scenarioTimeout = 3 * time.Minute

// TestBaseline: 1 ingest, 3 workers and query; 100,000 distinct events with
// 30% duplicates over 20 topics; exact counts, and every event readable
// through GET /events.
func TestBaseline(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 3})
	rep := s.mustPublish(t, ctx, "--events", "100000", "--duplicates", "0.3", "--topics", "20",
		"--batch", "500", "--concurrency", "8", "--settle-timeout", "90s")
	c := s.checkExact(t, ctx, rep, 0)
	if rep.Retries == 0 && c.received != 142857 {
		t.Errorf("received %d, want the 100,000 events plus 42,857 duplicates sent", c.received)
	}

	// The read path returns every stored event once. An event shows only
	// once every transaction older than its own has ended (on the whole
	// Postgres server), so a pass that comes up short is read again.
	for pass := 0; ; pass++ {
		seen := s.readAllEvents(t, ctx)
		if int64(len(seen)) == c.unique {
			break
		}
		if pass == 50 || ctx.Err() != nil {
			t.Fatalf("GET /events returned %d events, unique_processed is %d", len(seen), c.unique)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readAllEvents pages through /events from the start; no event may appear
// twice.
func (s *stack) readAllEvents(t *testing.T, ctx context.Context) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	cursor := ""
	for page := 0; ; page++ {
		if ctx.Err() != nil {
			t.Fatalf("reading /events: %v after %d pages", ctx.Err(), page)
		}
		p := s.eventsPage(t, ctx, cursor)
		for _, e := range p.Events {
			k := e.Topic + "/" + e.EventID
			if seen[k] {
				t.Fatalf("GET /events returned %s twice", k)
			}
			seen[k] = true
		}
		if p.NextCursor == "" {
			return seen
		}
		cursor = p.NextCursor
	}
}

type eventsPage struct {
	Count  int `json:"count"`
	Events []struct {
		Topic   string `json:"topic"`
		EventID string `json:"event_id"`
	} `json:"events"`
	NextCursor string `json:"next_cursor"`
}

func (s *stack) eventsPage(t *testing.T, ctx context.Context, cursor string) eventsPage {
	t.Helper()
	q := url.Values{"limit": {"1000"}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.queryURL()+"/events?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	defer resp.Body.Close()
	var p eventsPage
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("GET /events: %v", err)
	}
	if p.Count != len(p.Events) {
		t.Fatalf("GET /events: count %d for %d events", p.Count, len(p.Events))
	}
	return p
}
