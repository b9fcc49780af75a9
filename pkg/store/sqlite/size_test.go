package sqlite_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/store/sqlite"
)

// TestSizeGrowsWithTheEvents: the size is that of the database file and its
// write-ahead log, so written pages count before a checkpoint moves them.
func TestSizeGrowsWithTheEvents(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, before, err := s.Size(ctx)
	if err != nil || before <= 0 {
		t.Fatalf("empty store: %d bytes, %v", before, err)
	}
	payload := json.RawMessage(`{"pad":"` + strings.Repeat("x", 4000) + `"}`)
	b := &process.Batch{}
	for i := range 200 {
		b.Events = append(b.Events, event.Event{Topic: "t", EventID: fmt.Sprint(i), Source: "s",
			Timestamp: time.Unix(0, 0).UTC(), Payload: payload})
	}
	if _, err := s.Persist(ctx, b); err != nil {
		t.Fatal(err)
	}
	events, after, err := s.Size(ctx)
	if err != nil || after < before+200*4000 || events != 200 {
		t.Fatalf("after 200 events of 4 kB: %d events, %d bytes (was %d), %v", events, after, before, err)
	}
}
