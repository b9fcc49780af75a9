package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/api/apitest"
)

// client talks to one aggregator over real HTTP.
type client struct {
	t    testing.TB
	base string
	http *http.Client
}

func newClient(t testing.TB, base string) *client {
	// Every response is checked against openapi.json.
	return &client{t: t, base: base, http: &http.Client{Timeout: 30 * time.Second, Transport: apitest.Transport(t, nil)}}
}

type testEvent struct {
	Topic     string          `json:"topic"`
	EventID   string          `json:"event_id"`
	Timestamp string          `json:"timestamp"`
	Source    string          `json:"source"`
	Payload   json.RawMessage `json:"payload,omitempty"`
}

func ev(topic, id string) testEvent {
	return testEvent{Topic: topic, EventID: id, Timestamp: "2026-11-25T10:00:00Z", Source: "test",
		Payload: json.RawMessage(fmt.Sprintf(`{"id":%q}`, id))}
}

// publish posts body and returns the status code and response body.
func (c *client) publish(body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	return c.post("application/json", b)
}

func (c *client) post(ctype string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, c.base+"/publish", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

func (c *client) mustPublish(body any) {
	c.t.Helper()
	code, out, err := c.publish(body)
	if err != nil || code != http.StatusAccepted {
		c.t.Fatalf("publish: %d %s %v", code, out, err)
	}
}

type stats struct {
	Received   int64    `json:"received"`
	Unique     int64    `json:"unique_processed"`
	Duplicates int64    `json:"duplicate_dropped"`
	Topics     []string `json:"topics"`
	Uptime     float64  `json:"uptime"`
}

func (c *client) stats() stats {
	c.t.Helper()
	var s stats
	c.getJSON("/stats", &s)
	if s.Received != s.Unique+s.Duplicates {
		c.t.Fatalf("stats broke received == unique + duplicates: %+v", s)
	}
	return s
}

func (c *client) getJSON(path string, v any) {
	c.t.Helper()
	resp, err := c.http.Get(c.base + path)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		c.t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

type storedEvent struct {
	testEvent
	ProcessedAt time.Time `json:"processed_at"`
}

// allEvents pages through /events (of one topic when topic != "") and fails
// on any event seen twice.
func (c *client) allEvents(topic string, limit int) []storedEvent {
	c.t.Helper()
	var out []storedEvent
	seen := map[string]bool{}
	cursor := ""
	for {
		path := fmt.Sprintf("/events?limit=%d", limit)
		if topic != "" {
			path += "&topic=" + topic
		}
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var page struct {
			Count      int           `json:"count"`
			Events     []storedEvent `json:"events"`
			NextCursor string        `json:"next_cursor"`
		}
		c.getJSON(path, &page)
		if page.Count != len(page.Events) || page.Count > limit {
			c.t.Fatalf("page count %d, %d events, limit %d", page.Count, len(page.Events), limit)
		}
		for _, e := range page.Events {
			k := e.Topic + "\x00" + e.EventID
			if seen[k] {
				c.t.Fatalf("event %q/%q served twice", e.Topic, e.EventID)
			}
			seen[k] = true
			out = append(out, e)
		}
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
}

// startInProcess runs the aggregator in this process on a free port.
func startInProcess(t *testing.T, dataDir string, extra ...string) (*client, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	args := append([]string{"--addr", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "warn"}, extra...)
	go func() { done <- run(ctx, args, io.Discard, io.Discard, func(a net.Addr) { addrc <- a }) }()
	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-done:
		cancel()
		t.Fatalf("aggregator stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("aggregator did not start in 30 s")
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("aggregator stopped with: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return newClient(t, "http://"+addr.String()), stop
}

func idsOf(events []storedEvent) map[string]bool {
	m := make(map[string]bool, len(events))
	for _, e := range events {
		m[e.Topic+"/"+e.EventID] = true
	}
	return m
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// eachEngine runs test once on each embedded store.
func eachEngine(t *testing.T, test func(t *testing.T, engine string)) {
	for _, engine := range []string{"sqlite", "pebble"} {
		t.Run(engine, func(t *testing.T) { test(t, engine) })
	}
}
