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

// TestSizeBytesGrowsWithTheEvents: the size is that of the pages in use,
// written ones included before a checkpoint moved them into the file.
func TestSizeBytesGrowsWithTheEvents(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before, err := s.SizeBytes(ctx)
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
	after, err := s.SizeBytes(ctx)
	if err != nil || after < before+200*4000 {
		t.Fatalf("after 800 kB of payloads: %d bytes (was %d), %v", after, before, err)
	}
}
