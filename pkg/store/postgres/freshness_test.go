package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// connect opens a connection of its own, closed with the test.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// holdOpen begins a transaction on conn, runs stmt in it and leaves it open
// until the test ends.
func holdOpen(t *testing.T, conn *pgx.Conn, stmt string) {
	t.Helper()
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(t.Context(), stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// Transactions that hold an xid, or a snapshot, anywhere in the cluster do
// not hide an event from GET /events: one read right after Persist returns
// serves it.
func TestEventsFreshWhileOthersRun(t *testing.T) {
	t.Parallel()
	url := testdeps.NewPostgresDB(t)
	s := openURL(t, url)
	ctx := t.Context()

	// A long write transaction in another database of the cluster.
	other := connect(t, testdeps.NewPostgresDB(t))
	if _, err := other.Exec(ctx, `CREATE TABLE filler (n int)`); err != nil {
		t.Fatal(err)
	}
	holdOpen(t, other, `INSERT INTO filler VALUES (1)`)
	// A long write transaction on another table of this database.
	same := connect(t, url)
	if _, err := same.Exec(ctx, `CREATE TABLE report_state (n int)`); err != nil {
		t.Fatal(err)
	}
	holdOpen(t, same, `INSERT INTO report_state VALUES (1)`)
	// A long report: a repeatable-read snapshot over the events.
	report := connect(t, url)
	holdOpen(t, report, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`)
	if _, err := report.Exec(ctx, `SELECT count(*) FROM events`); err != nil {
		t.Fatal(err)
	}
	// The horizon the cursor used to wait on is held back by them.
	var held bool
	if err := same.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot()) <= (SELECT max(backend_xid::text::bigint)
		FROM pg_stat_activity WHERE backend_xid IS NOT NULL)::text::xid8`).Scan(&held); err != nil {
		t.Fatalf("read the horizon: %v", err)
	}
	if !held {
		t.Fatal("the open transactions do not hold the cluster's snapshot xmin back: the test proves nothing")
	}

	var cursor event.Position
	for i := range 3 {
		id := fmt.Sprint("fresh-", i)
		if _, err := s.Persist(ctx, &process.Batch{Events: []event.Event{
			{Topic: "t", EventID: id, Timestamp: time.Now(), Source: "s", Payload: []byte(`{}`)},
		}}); err != nil {
			t.Fatalf("persist: %v", err)
		}
		for _, topic := range []string{"", "t"} {
			page, err := s.Events(ctx, topic, cursor, 10)
			if err != nil {
				t.Fatalf("events: %v", err)
			}
			if len(page) != 1 || page[0].EventID != id {
				t.Fatalf("Events(topic %q) right after storing %s: %d events %v; want just it", topic, id, len(page), page)
			}
			if topic == "t" {
				cursor = page[0].Pos
			}
		}
	}
}

// Writers commit in any order while a reader pages on from its cursor: the
// reader is served every stored event exactly once, in increasing positions.
func TestEventsCursorConcurrentWriters(t *testing.T) {
	t.Parallel()
	url := testdeps.NewPostgresDB(t)
	s := openURL(t, url)
	ctx := t.Context()
	// A transaction held open meanwhile: the reads must not depend on it.
	holdOpen(t, connect(t, testdeps.NewPostgresDB(t)), `SELECT pg_current_xact_id()`)

	const writers, batches, perBatch = 4, 40, 13
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				batch := &process.Batch{Shard: w}
				for i := range perBatch {
					// Half the keys are every writer's: the writers wait
					// on each other's rows and commit out of the order of
					// their txids and seqs.
					id := fmt.Sprintf("w%d-b%d-i%d", w, b, i)
					if i%2 == 0 {
						id = fmt.Sprintf("shared-b%d-i%d", b, i)
					}
					batch.Events = append(batch.Events, event.Event{Topic: fmt.Sprint("t", i%3),
						EventID: id, Timestamp: time.Now(), Source: "s", Payload: []byte(`{}`)})
				}
				if _, err := s.Persist(ctx, batch); err != nil {
					t.Errorf("writer %d: persist: %v", w, err)
					return
				}
			}
		})
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()

	seen := map[event.Key]event.Position{}
	var cursor event.Position
	read := func() int {
		page, err := s.Events(ctx, "", cursor, 7)
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		for _, e := range page {
			if e.Pos.Compare(cursor) <= 0 {
				t.Fatalf("position %v served after %v", e.Pos, cursor)
			}
			if at, dup := seen[e.Key()]; dup {
				t.Fatalf("%v served twice, at %v and %v", e.Key(), at, e.Pos)
			}
			seen[e.Key()] = e.Pos
			cursor = e.Pos
		}
		return len(page)
	}
	for done := false; !done; {
		select {
		case <-writing:
			done = true
		default:
			read()
		}
	}
	// Everything is committed now: one pass to the end serves the rest.
	for read() > 0 {
	}
	rows, err := s.Rows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(seen)) != rows {
		t.Fatalf("the reader was served %d distinct events, %d are stored", len(seen), rows)
	}
	if rows == 0 {
		t.Fatal("nothing stored")
	}
}
