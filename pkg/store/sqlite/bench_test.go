package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/event-aggregator/event-aggregator/pkg/store/sqlite"
	"github.com/event-aggregator/event-aggregator/pkg/store/storetest"
)

// BenchmarkPersist is the all-in-one store path: batches of 1,000 events,
// 20% duplicates, one writer (SQLite has one).
func BenchmarkPersist(b *testing.B) {
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "events.db"))
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(func() { s.Close() })
	storetest.BenchPersist(b, s, 1)
}
