package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestHelpListsEverySetting(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"--help"}, &out, &out, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--addr", `":8080"`, "AGGREGATOR_ADDR", "--data-dir", `"./data"`,
		"AGGREGATOR_DATA_DIR", "AGGREGATOR_API_KEYS", "AGGREGATOR_MAX_EVENTS", "10000"} {
		if !contains(out.String(), want) {
			t.Errorf("--help does not mention %s:\n%s", want, out.String())
		}
	}
}

// TestSameEventFrom50Goroutines: one event sent 50 times at once is stored
// once and counted 50 times.
func TestSameEventFrom50Goroutines(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		c, _ := startInProcess(t, t.TempDir(), "--store="+engine)
		var wg sync.WaitGroup
		var failed atomic.Int32
		for range 50 {
			wg.Go(func() {
				if code, _, err := c.publish(ev("race", "the-one")); err != nil || code != http.StatusAccepted {
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		if failed.Load() > 0 {
			t.Fatalf("%d publishes failed", failed.Load())
		}
		s := c.stats()
		if s.Received != 50 || s.Unique != 1 || s.Duplicates != 49 {
			t.Fatalf("stats %+v, want 50 received, 1 unique, 49 duplicates", s)
		}
		if got := c.allEvents("", 100); len(got) != 1 {
			t.Fatalf("%d events stored, want 1", len(got))
		}
	})
}

func TestDuplicateInsideOneBatch(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		c, _ := startInProcess(t, t.TempDir(), "--store="+engine)
		first := ev("orders", "e-1")
		again := ev("orders", "e-1")
		again.Payload = json.RawMessage(`{"different":true}`)
		c.mustPublish([]testEvent{first, ev("orders", "e-2"), again})
		s := c.stats()
		if s.Received != 3 || s.Unique != 2 || s.Duplicates != 1 {
			t.Fatalf("stats %+v, want 3/2/1", s)
		}
		for _, e := range c.allEvents("orders", 10) {
			if e.EventID == "e-1" && string(e.Payload) != string(first.Payload) {
				t.Errorf("stored payload %s; the first copy %s must win", e.Payload, first.Payload)
			}
		}
	})
}

// TestConcurrentPublishersExactCounts: many clients, overlapping events, all
// four body shapes; the counters hold at every instant and match the rows, and
// pagination yields every event once.
func TestConcurrentPublishersExactCounts(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		c, _ := startInProcess(t, t.TempDir(), "--store="+engine)
		const clients, perClient, distinct = 8, 600, 1500
		stop := make(chan struct{})
		var checks atomic.Int32
		var watcher sync.WaitGroup
		watcher.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					c.stats() // fails the test if received != unique + duplicates
					checks.Add(1)
				}
			}
		})
		var wg sync.WaitGroup
		for w := range clients {
			wg.Go(func() {
				var batch []testEvent
				flush := func(i int) {
					switch i % 3 {
					case 0:
						c.mustPublish(batch)
					case 1:
						c.mustPublish(map[string]any{"events": batch})
					default:
						var nd bytes.Buffer
						for _, e := range batch {
							b, _ := json.Marshal(e)
							nd.Write(b)
							nd.WriteByte('\n')
						}
						if code, out, err := c.post("application/x-ndjson", nd.Bytes()); err != nil || code != 202 {
							t.Errorf("ndjson publish: %d %s %v", code, out, err)
						}
					}
					batch = batch[:0]
				}
				for i := range perClient {
					n := (w*perClient + i*7) % distinct
					batch = append(batch, ev(fmt.Sprintf("topic-%d", n%5), fmt.Sprintf("e-%d", n)))
					if len(batch) == 25 {
						flush(i)
					}
				}
				if len(batch) > 0 {
					flush(1)
				}
			})
		}
		wg.Wait()
		close(stop)
		watcher.Wait()

		s := c.stats()
		sent := int64(clients * perClient)
		all := c.allEvents("", 1000)
		if s.Received != sent {
			t.Errorf("received %d, want %d", s.Received, sent)
		}
		if s.Unique != int64(len(all)) {
			t.Errorf("unique_processed %d, but /events serves %d", s.Unique, len(all))
		}
		ids := idsOf(all)
		for n := range distinct {
			if !ids[fmt.Sprintf("topic-%d/e-%d", n%5, n)] && int64(n) < sent {
				// every id below the number sent was sent by some client
				t.Fatalf("event e-%d missing", n)
			}
		}
		perTopic := 0
		for _, topic := range s.Topics {
			perTopic += len(c.allEvents(topic, 7))
		}
		if perTopic != len(all) {
			t.Errorf("pages per topic hold %d events, all pages %d", perTopic, len(all))
		}
		if checks.Load() == 0 {
			t.Error("the stats invariant was never checked during the run")
		}
	})
}

// TestHostileInput: strings that look like SQL, unusual unicode and escaped
// control characters are stored verbatim; what breaks a rule gets a 4xx and
// changes nothing; the process keeps serving.
func TestHostileInput(t *testing.T) {
	c, _ := startInProcess(t, t.TempDir())
	verbatim := []testEvent{
		ev("'); DROP TABLE events;--", `" OR 1=1 --`),
		ev("ünïcödé/топик/话题", "🙂‍↔️-e\u0301-\u202e-rtl"),
		ev("topic with spaces  ", "id\twith"[:2]+"-tabless"),
		ev(strings.Repeat("t", 255), strings.Repeat("é", 127)),
		{Topic: "payloads", EventID: "nested", Timestamp: "2026-11-25T10:00:00+05:30", Source: "s",
			Payload: json.RawMessage(`{"a":{"b":[1,{"c":"\u0000\u001f\"\\"}]},"sql":"' OR ''='","n":1e308}`)},
	}
	c.mustPublish(verbatim)
	stored := map[string]storedEvent{}
	for _, e := range c.allEvents("", 100) {
		stored[e.Topic+"\x00"+e.EventID] = e
	}
	for _, want := range verbatim {
		got, ok := stored[want.Topic+"\x00"+want.EventID]
		if !ok {
			t.Errorf("event %q/%q not stored verbatim", want.Topic, want.EventID)
			continue
		}
		var a, b any
		_ = json.Unmarshal(got.Payload, &a)
		_ = json.Unmarshal(want.Payload, &b)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("payload %s, want %s", got.Payload, want.Payload)
		}
	}

	before := c.stats()
	refused := []struct {
		name, ctype string
		body        []byte
		want        int
	}{
		{"control char in topic", "application/json", []byte(`{"topic":"a\u0007b","event_id":"x","timestamp":"2026-11-25T10:00:00Z","source":"s"}`), 422},
		{"256-byte topic", "application/json", []byte(`{"topic":"` + strings.Repeat("t", 256) + `","event_id":"x","timestamp":"2026-11-25T10:00:00Z","source":"s"}`), 422},
		{"invalid utf-8", "application/json", []byte("{\"topic\":\"\xed\xa0\x80\",\"event_id\":\"x\",\"timestamp\":\"2026-11-25T10:00:00Z\",\"source\":\"s\"}"), 400},
		{"deeply nested payload", "application/json", []byte(`{"topic":"t","event_id":"x","timestamp":"2026-11-25T10:00:00Z","source":"s","payload":` + strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000) + "}"), 400},
		{"deeply nested array", "application/json", []byte(strings.Repeat("[", 50000) + strings.Repeat("]", 50000)), 400},
		{"nul bytes", "application/json", []byte("\x00\x00\x00"), 400},
		{"one good one bad", "application/json", []byte(`[{"topic":"t","event_id":"ok","timestamp":"2026-11-25T10:00:00Z","source":"s"},{"topic":"t"}]`), 422},
		{"lone surrogate in an id", "application/json", []byte(`[{"topic":"t","event_id":"ok","timestamp":"2026-11-25T10:00:00Z","source":"s"},{"topic":"t","event_id":"a\ud800","timestamp":"2026-11-25T10:00:00Z","source":"s"}]`), 422},
		{"event that is also an envelope", "application/json", []byte(`{"topic":"t","event_id":"x","timestamp":"2026-11-25T10:00:00Z","source":"s","EVENTS":[{"topic":"t","event_id":"ok","timestamp":"2026-11-25T10:00:00Z","source":"s"}]}`), 400},
		{"field twice", "application/json", []byte(`[{"topic":"t","event_id":"ok","timestamp":"2026-11-25T10:00:00Z","source":"s"},{"topic":"t","event_id":"y","event_id":"z","timestamp":"2026-11-25T10:00:00Z","source":"s"}]`), 422},
		{"field in another case", "application/json", []byte(`[{"topic":"t","event_id":"ok","timestamp":"2026-11-25T10:00:00Z","source":"s"},{"topic":"t","Event_Id":"y","timestamp":"2026-11-25T10:00:00Z","source":"s"}]`), 422},
	}
	for _, r := range refused {
		code, body, err := c.post(r.ctype, r.body)
		if err != nil || code != r.want {
			t.Errorf("%s: status %d (%v), want %d: %s", r.name, code, err, r.want, body)
		}
	}
	if after := c.stats(); after.Received != before.Received || after.Unique != before.Unique {
		t.Errorf("refused requests changed the counts: %+v → %+v", before, after)
	}
	for _, e := range c.allEvents("t", 100) {
		if e.EventID == "ok" {
			t.Error("an all-or-nothing request stored part of itself")
		}
	}
}

func TestQueryParameters(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		c, _ := startInProcess(t, t.TempDir(), "--store="+engine)
		for _, q := range []string{"limit=0", "limit=1001", "limit=x", "cursor=nope", "cursor=" + strings.Repeat("A", 10)} {
			resp, err := c.http.Get(c.base + "/events?" + q)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("/events?%s: %d %s, want 400 problem+json", q, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
		}
	})
}

// TestCountsSurviveRestart: a clean stop and start keeps rows, counters and
// the dedup memory.
func TestCountsSurviveRestart(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		dir := t.TempDir()
		c, stop := startInProcess(t, dir, "--store="+engine)
		var batch []testEvent
		for i := range 300 {
			batch = append(batch, ev("restart", fmt.Sprintf("e-%d", i)))
		}
		c.mustPublish(batch)
		c.mustPublish(batch[:100])
		before := c.stats()
		stop()

		c2, _ := startInProcess(t, dir, "--store="+engine)
		if after := c2.stats(); after.Received != before.Received || after.Unique != before.Unique || after.Duplicates != before.Duplicates {
			t.Fatalf("counts changed across restart: %+v → %+v", before, after)
		}
		c2.mustPublish(batch)
		after := c2.stats()
		if after.Unique != 300 || after.Duplicates != before.Duplicates+300 {
			t.Fatalf("re-sent events not recognised after restart: %+v", after)
		}
	})
}

func TestAPIKeysEndToEnd(t *testing.T) {
	c, _ := startInProcess(t, t.TempDir(), "--api-keys", "k1,k2")
	if code, _, _ := c.publish(ev("t", "x")); code != http.StatusUnauthorized {
		t.Fatalf("publish without key: %d, want 401", code)
	}
	req, _ := http.NewRequest(http.MethodGet, c.base+"/stats", nil)
	req.Header.Set("Authorization", "Bearer k2")
	resp, err := c.http.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stats with key: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, open := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		resp, err := c.http.Get(c.base + open)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("%s without key: %v %v", open, resp, err)
		}
		resp.Body.Close()
	}
}

// TestAutoKeepsTheEngineOfTheDataDir: with --store auto (the default) a new
// data directory gets Pebble, one that SQLite wrote stays SQLite with every
// event it holds, and one holding both is refused rather than guessed.
func TestAutoKeepsTheEngineOfTheDataDir(t *testing.T) {
	fresh := t.TempDir()
	c, stop := startInProcess(t, fresh)
	c.mustPublish(ev("new", "e-1"))
	stop()
	if _, err := os.Stat(filepath.Join(fresh, "pebble")); err != nil {
		t.Fatalf("a new data dir under auto: %v, want a pebble store", err)
	}
	if _, err := os.Stat(filepath.Join(fresh, "events.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a new data dir under auto: events.db %v, want none", err)
	}

	old := t.TempDir()
	c, stop = startInProcess(t, old, "--store=sqlite")
	c.mustPublish(ev("old", "e-1"))
	stop()
	c, stop = startInProcess(t, old)
	// A duplicate only if the SQLite store, not a new one, was opened.
	c.mustPublish(ev("old", "e-1"))
	if s := c.stats(); s.Unique != 1 || s.Duplicates != 1 {
		t.Fatalf("auto on a sqlite data dir: %+v, want its one event and the copy dropped", s)
	}
	stop()
	if _, err := os.Stat(filepath.Join(old, "pebble")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("auto on a sqlite data dir: pebble/ %v, want none", err)
	}

	if err := os.Mkdir(filepath.Join(old, "pebble"), 0o750); err != nil {
		t.Fatal(err)
	}
	err := run(t.Context(), []string{"--addr", "127.0.0.1:0", "--data-dir", old}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "each engine") {
		t.Fatalf("auto on a data dir with both engines' files: %v, want a refusal", err)
	}
}

// TestRefusesTheOtherEnginesData: a data directory written by one engine is
// not opened as an empty store of the other, which would look like every
// event had been lost.
func TestRefusesTheOtherEnginesData(t *testing.T) {
	dir := t.TempDir()
	c, stop := startInProcess(t, dir, "--store=pebble")
	c.mustPublish(ev("kept", "e-1"))
	stop()
	err := run(t.Context(), []string{"--addr", "127.0.0.1:0", "--data-dir", dir, "--store", "sqlite"}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "other engine") {
		t.Fatalf("sqlite on a pebble data dir: %v, want a refusal naming the other engine", err)
	}
	c, _ = startInProcess(t, dir, "--store=pebble")
	if s := c.stats(); s.Unique != 1 {
		t.Fatalf("after the refusal: %+v, want the pebble store's one event", s)
	}
}
