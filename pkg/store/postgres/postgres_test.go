package postgres_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
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
func TestTimestampRange(t *testing.T) {
	t.Parallel()
	s := open(t)
	times := []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1677, 9, 21, 0, 12, 43, 145_224_191, time.UTC),
		time.Date(2262, 4, 11, 23, 47, 16, 854_775_808, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
	}
	b := &process.Batch{}
	for i, ts := range times {
		b.Events = append(b.Events, event.Event{Topic: "t", EventID: fmt.Sprint(i), Timestamp: ts, Source: "s", Payload: []byte(`{}`)})
	}
	if _, err := s.Persist(t.Context(), b); err != nil {
		t.Fatalf("persist: %v", err)
	}
	got, err := s.Events(t.Context(), "t", 0, 10)
	if err != nil || len(got) != len(times) {
		t.Fatalf("Events: %d events, %v", len(got), err)
	}
	for _, e := range got {
		i, _ := strconv.Atoi(e.EventID)
		if want := times[i].Truncate(time.Microsecond); !e.Timestamp.Equal(want) {
			t.Errorf("timestamp %s came back as %s", want.Format(time.RFC3339Nano), e.Timestamp.Format(time.RFC3339Nano))
		}
	}
}
