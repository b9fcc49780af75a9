package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/store/sqlite"
	"github.com/event-aggregator/event-aggregator/pkg/store/storetest"
)

func TestContract(t *testing.T) {
	// The all-in-one has no Kafka: no offsets, and a batch with one is refused.
	storetest.Run(t, storetest.NoOffsets, func(t *testing.T) storetest.Subject {
		s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "events.db"))
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		// Timestamps are stored as Unix microseconds, like Postgres keeps them.
		return storetest.Subject{Store: s, TimeResolution: time.Microsecond}
	})
}
