package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/event-aggregator/event-aggregator/pkg/store/sqlite"
	"github.com/event-aggregator/event-aggregator/pkg/store/storetest"
)

// BenchmarkPersistUUID: storetest.BenchPersistUUID on SQLite.
func BenchmarkPersistUUID(b *testing.B) {
	var opts []sqlite.Option
	// Compares checkpoint sizes in one build: BENCH_CHECKPOINT_PAGES=1000 is
	// SQLite's default.
	if n, err := strconv.Atoi(os.Getenv("BENCH_CHECKPOINT_PAGES")); err == nil {
		opts = append(opts, sqlite.WithCheckpointPages(n))
	}
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "events.db"), opts...)
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(func() { s.Close() })
	storetest.BenchPersistUUID(b, s)
}

// BenchmarkFillUUID: storetest.BenchFillUUID on SQLite (-benchtime=5x: five
// million events).
func BenchmarkFillUUID(b *testing.B) {
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "events.db"))
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(func() { s.Close() })
	storetest.BenchFillUUID(b, s)
}
