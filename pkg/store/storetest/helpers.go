package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// baseTime has nanoseconds, so a store that drops or rounds them shows it.
var baseTime = time.Date(2026, 11, 25, 10, 0, 0, 123_456_789, time.UTC)

// ev returns a valid event whose payload names its key.
func ev(topic, id string) event.Event {
	p, _ := json.Marshal(map[string]string{"id": id})
	return event.Event{Topic: topic, EventID: id, Timestamp: baseTime, Source: "src-1", Payload: p}
}

// persist stores b and fails the test on error.
func persist(t *testing.T, s Store, b *process.Batch) process.Persisted {
	t.Helper()
	p, err := s.Persist(context.Background(), b)
	if err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if len(p.New) != len(b.Events) {
		t.Fatalf("Persist returned %d New flags for %d events", len(p.New), len(b.Events))
	}
	return p
}

func wantNew(t *testing.T, p process.Persisted, want ...bool) {
	t.Helper()
	if fmt.Sprint(p.New) != fmt.Sprint(want) {
		t.Errorf("New = %v, want %v", p.New, want)
	}
}

// counts returns the counters by topic.
func counts(t *testing.T, s Store) map[string]event.Counts {
	t.Helper()
	cs, err := s.Counts(context.Background())
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	m := make(map[string]event.Counts, len(cs))
	for _, c := range cs {
		m[c.Topic] = c
	}
	return m
}

// wantCounts checks received, unique and duplicates of each listed topic and
// that no other topic exists.
func wantCounts(t *testing.T, s Store, want map[string][3]int64) {
	t.Helper()
	got := counts(t, s)
	for topic, w := range want {
		c := got[topic]
		if [3]int64{c.Received, c.Unique, c.Duplicates} != w {
			t.Errorf("topic %q: (received, unique, duplicates) = (%d, %d, %d), want %v",
				topic, c.Received, c.Unique, c.Duplicates, w)
		}
	}
	for topic := range got {
		if _, ok := want[topic]; !ok {
			t.Errorf("unexpected topic %q in Counts: %+v", topic, got[topic])
		}
	}
}

func wantRows(t *testing.T, s Store, want int64) {
	t.Helper()
	n, err := s.Rows(context.Background())
	if err != nil {
		t.Fatalf("Rows: %v", err)
	}
	if n != want {
		t.Errorf("Rows = %d, want %d", n, want)
	}
}

func offsets(t *testing.T, s OffsetStore, topic string) map[int]int64 {
	t.Helper()
	o, err := s.Offsets(context.Background(), topic)
	if err != nil {
		t.Fatalf("Offsets(%q): %v", topic, err)
	}
	return o
}

func wantOffsets(t *testing.T, s OffsetStore, topic string, want map[int]int64) {
	t.Helper()
	if got := offsets(t, s, topic); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Offsets(%q) = %v, want %v", topic, got, want)
	}
}

// readAll pages through Events with the given page size, checking that
// positions only grow and each page respects the limit and the topic. A
// store may serve a commit a moment late (query.Reader), so it first waits
// until Events serves as many events as are stored.
func readAll(t *testing.T, s Store, topic string, limit int) []event.Stored {
	t.Helper()
	settle(t, s)
	all, _ := pageFrom(t, s, topic, event.Position{}, limit)
	return all
}

// settle waits until paging through every topic yields at least Rows events.
func settle(t *testing.T, s Store) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := s.Rows(context.Background())
		if err != nil {
			t.Fatalf("Rows: %v", err)
		}
		all, _ := pageFrom(t, s, "", event.Position{}, 1000)
		if int64(len(all)) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Events serves %d of %d stored events after 30s", len(all), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pageFrom pages through what Events serves now, from after to the end, with
// the checks of readAll; it returns the events and the position to go on from.
func pageFrom(t *testing.T, s Store, topic string, after event.Position, limit int) ([]event.Stored, event.Position) {
	t.Helper()
	var all []event.Stored
	for {
		page, err := s.Events(context.Background(), topic, after, limit)
		if err != nil {
			t.Fatalf("Events(%q, %v, %d): %v", topic, after, limit, err)
		}
		if len(page) > limit {
			t.Fatalf("Events returned %d events for limit %d", len(page), limit)
		}
		if len(page) == 0 {
			return all, after
		}
		for _, e := range page {
			if e.Pos.Compare(after) <= 0 {
				t.Fatalf("Events(after %v) returned position %v: not increasing", after, e.Pos)
			}
			if topic != "" && e.Topic != topic {
				t.Fatalf("Events(topic %q) returned an event of topic %q", topic, e.Topic)
			}
			after = e.Pos
		}
		all = append(all, page...)
	}
}

// byKey indexes stored events by key, failing on a key stored twice.
func byKey(t *testing.T, events []event.Stored) map[event.Key]event.Stored {
	t.Helper()
	m := make(map[event.Key]event.Stored, len(events))
	for _, e := range events {
		k := e.Key()
		if _, dup := m[k]; dup {
			t.Errorf("key %q stored twice", k)
		}
		m[k] = e
	}
	return m
}

// sameEvent checks that got holds exactly what want carried: every byte of
// the strings and the payload, and the timestamp in UTC at the store's
// resolution.
func sameEvent(t *testing.T, got event.Stored, want event.Event, res time.Duration) {
	t.Helper()
	if got.Topic != want.Topic || got.EventID != want.EventID || got.Source != want.Source {
		t.Errorf("stored (%q, %q, source %q), want (%q, %q, source %q)",
			got.Topic, got.EventID, got.Source, want.Topic, want.EventID, want.Source)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("key %q: payload\n got %q\nwant %q", want.Key(), got.Payload, want.Payload)
	}
	wantTS := want.Timestamp.UTC().Truncate(res)
	if !got.Timestamp.Equal(wantTS) || got.Timestamp.Location() != time.UTC {
		t.Errorf("key %q: timestamp %s (%v), want %s in UTC",
			want.Key(), got.Timestamp.Format(time.RFC3339Nano), got.Timestamp.Location(), wantTS.Format(time.RFC3339Nano))
	}
	if got.ProcessedAt.IsZero() || got.ProcessedAt.Location() != time.UTC {
		t.Errorf("key %q: processed_at %v, want a time in UTC", want.Key(), got.ProcessedAt)
	}
}
