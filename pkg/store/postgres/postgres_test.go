package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/store/postgres"
	"github.com/event-aggregator/event-aggregator/pkg/store/storetest"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// open returns a migrated Store on a fresh database.
func open(t *testing.T) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), testdeps.NewPostgresDB(t), 8)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Subject {
		// timestamptz keeps microseconds.
		return storetest.Subject{Store: open(t), TimeResolution: time.Microsecond}
	})
}

// Several processes (a Helm hook and replicas starting with migrate-on-start)
// may migrate one database at once; then again on every restart. One
// connection each is enough: goose migrates on the connection holding the lock.
func TestMigrateConcurrentAndIdempotent(t *testing.T) {
	t.Parallel()
	url := testdeps.NewPostgresDB(t)
	const procs = 4
	stores := make([]*postgres.Store, procs)
	for i := range stores {
		s, err := postgres.Open(context.Background(), url, 1)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(s.Close)
		stores[i] = s
	}
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			if err := s.Migrate(t.Context()); err != nil {
				t.Errorf("store %d: migrate: %v", i, err)
			}
		})
	}
	wg.Wait()
	if err := stores[0].Migrate(t.Context()); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if n, err := stores[1].Rows(t.Context()); err != nil || n != 0 {
		t.Fatalf("Rows = %d, %v; want 0, nil", n, err)
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	s := open(t)
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("ping: %v", err)
	}

	if _, err := postgres.Open(context.Background(), "postgres://%zz", 1); err == nil {
		t.Error("Open accepted a malformed URL")
	}
	// Nothing listens on port 1: Ping fails, within its context.
	down, err := postgres.Open(context.Background(), "postgres://u:p@127.0.0.1:1/db?sslmode=disable&connect_timeout=2", 1)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer down.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := down.Ping(ctx); err == nil {
		t.Error("Ping succeeded with no server")
	}
}

// Every year an RFC 3339 timestamp can carry (0001-9999) round-trips; Unix
// nanoseconds (int64) would not reach past 1678 or 2262.
