package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"github.com/pressly/goose/v3"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/store/postgres"
	"github.com/event-aggregator/event-aggregator/pkg/store/storetest"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// open returns a migrated Store on a fresh database.
func open(t *testing.T) *postgres.Store {
	t.Helper()
	return openURL(t, testdeps.NewPostgresDB(t))
}

func openURL(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url, 8)
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
	storetest.Run(t, storetest.KeepsOffsets, func(t *testing.T) storetest.Subject {
		url := testdeps.NewPostgresDB(t)
		// timestamptz keeps microseconds.
		return storetest.Subject{Store: openURL(t, url), TimeResolution: time.Microsecond, Stall: stall(url)}
	})
}

// stall holds the counters row of (topic, shard) from a transaction of its
// own: Persist upserts counters after inserting its rows, so one writing
// that row waits there, inside its open transaction, until release.
func stall(url string) func(t *testing.T, topic string, shard int) (func() bool, func()) {
	return func(t *testing.T, topic string, shard int) (func() bool, func()) {
		t.Helper()
		ctx := context.Background()
		connect := func() *pgx.Conn {
			c, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			return c
		}
		holder, watcher := connect(), connect()
		tx, err := holder.Begin(ctx)
		if err != nil {
			t.Fatalf("begin: %v", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO counters (topic, partition, received, unique_processed, duplicate_dropped)
			VALUES ($1, $2, 0, 0, 0)`, topic, shard); err != nil {
			t.Fatalf("hold counters row: %v", err)
		}
		pid := holder.PgConn().PID()
		stalled := func() bool {
			var waiting bool
			if err := watcher.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
				WHERE $1::int = ANY (pg_blocking_pids(pid)))`, int32(pid)).Scan(&waiting); err != nil {
				t.Fatalf("watch locks: %v", err)
			}
			return waiting
		}
		release := func() {
			if err := tx.Rollback(ctx); err != nil {
				t.Errorf("release counters row: %v", err)
			}
		}
		return stalled, release
	}
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

// Rows stored before positions had a transaction part keep their order and
// come before every later row; a cursor handed out then (a seq) goes on.
func TestMigrateKeepsEarlierRowsFirst(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := testdeps.NewPostgresDB(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, os.DirFS("migrations"), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	if _, err := p.UpTo(ctx, 1); err != nil {
		t.Fatalf("migrate to version 1: %v", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO events (topic, event_id, ts, source, payload)
		SELECT 't', 'old-' || g, now(), 's', '{}' FROM generate_series(1, 4) g`); err != nil {
		t.Fatalf("insert: %v", err)
	}

	s := openURL(t, url)
	if _, err := s.Persist(ctx, &process.Batch{Events: []event.Event{
		{Topic: "t", EventID: "new", Timestamp: time.Now(), Source: "s", Payload: []byte(`{}`)},
	}}); err != nil {
		t.Fatalf("persist: %v", err)
	}
	var got []string
	var after event.Position
	for deadline := time.Now().Add(10 * time.Second); len(got) < 5 && time.Now().Before(deadline); {
		page, err := s.Events(ctx, "", after, 2)
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		for _, e := range page {
			got = append(got, fmt.Sprintf("%s@%d", e.EventID, e.Pos.Tx))
			after = e.Pos
		}
		if len(page) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if len(got) != 5 || !strings.HasPrefix(got[4], "new@") || got[4] == "new@0" || fmt.Sprint(got[:4]) != "[old-1@0 old-2@0 old-3@0 old-4@0]" {
		t.Fatalf("events after migration: %v; want old-1..4 at tx 0, then new", got)
	}
	// A seq cursor from before the change: position (0, seq).
	page, err := s.Events(ctx, "t", event.Position{Seq: 2}, 10)
	if err != nil || len(page) != 3 || page[0].EventID != "old-3" || page[2].EventID != "new" {
		t.Fatalf("events after seq 2: %d events (%v), want old-3, old-4, new", len(page), err)
	}
}
