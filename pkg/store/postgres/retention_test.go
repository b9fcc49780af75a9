package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/store/postgres"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// expireHelperEnv makes the test binary the process that deletes, against
// the database it names, instead of running tests (TestKill9DuringExpire).
const expireHelperEnv = "EA_TEST_EXPIRE_HELPER_URL"

func TestMain(m *testing.M) {
	if u := os.Getenv(expireHelperEnv); u != "" {
		expireUntilKilled(u)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// expireUntilKilled deletes batch after batch until the process is killed.
func expireUntilKilled(u string) {
	s, err := postgres.Open(context.Background(), u, 1)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return
	}
	for {
		// Cutoff in the future: everything is expired; keys are kept.
		if _, err := s.Expire(context.Background(), "k", time.Now().Add(time.Hour), true, 200); err != nil {
			fmt.Fprintln(os.Stderr, "expire:", err)
			return
		}
	}
}

// TestKill9DuringExpire: a process deleting expired events is killed with
// SIGKILL while one of its deletion transactions is open (seen in
// pg_stat_activity), as writers go on storing. Afterwards the counters are
// exact, every event is either served once or counted as deleted, and every
// event ever stored is either alive or remembered: storing them all again
// adds nothing.
func TestKill9DuringExpire(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbURL := testdeps.NewPostgresDB(t)
	s := openURL(t, dbURL)

	const seeded = 20_000
	var all []event.Event
	for b := range seeded / 1000 {
		var batch process.Batch
		for i := range 1000 {
			batch.Events = append(batch.Events, event.Event{Topic: "k", EventID: fmt.Sprintf("%d-%d", b, i),
				Timestamp: time.Now(), Source: "s", Payload: []byte(`{"p":1}`)})
		}
		if _, err := s.Persist(ctx, &batch); err != nil {
			t.Fatalf("seed: %v", err)
		}
		all = append(all, batch.Events...)
	}

	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", "ea-expire-helper")
	u.RawQuery = q.Encode()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), expireHelperEnv+"="+u.String())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the deleting process: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Writers go on: new events and late copies of the ones being deleted.
	writing := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		defer close(writing)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			e := event.Event{Topic: "k", EventID: fmt.Sprintf("w-%d", n), Timestamp: time.Now(), Source: "s", Payload: []byte(`{}`)}
			if _, err := s.Persist(ctx, &process.Batch{Events: []event.Event{e, all[n%seeded]}}); err != nil {
				writing <- err
				return
			}
			all = append(all, e)
		}
	}()

	watch, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer watch.Close(ctx)
	inTx := func() bool {
		var n int
		if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'ea-expire-helper' AND datname = current_database() AND xact_start IS NOT NULL`).Scan(&n); err != nil {
			t.Fatalf("watch: %v", err)
		}
		return n > 0
	}
	deleted := func() int64 {
		n, err := s.Deleted(ctx)
		if err != nil {
			t.Fatalf("Deleted: %v", err)
		}
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for deleted() < 2000 || !inTx() {
		if time.Now().After(deadline) {
			t.Fatalf("no deletion transaction under way after a minute (%d deleted)", deleted())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	_ = cmd.Wait()
	close(stop)
	if err := <-writing; err != nil {
		t.Fatalf("persist while deleting: %v", err)
	}
	// Postgres rolls the killed transaction back once it sees the client gone.
	for deadline := time.Now().Add(time.Minute); ; {
		var n int
		if err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ea-expire-helper'`).Scan(&n); err != nil {
			t.Fatalf("watch: %v", err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed process's session is still there after a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}

	counts, err := s.Counts(ctx)
	if err != nil || len(counts) != 1 {
		t.Fatalf("Counts = %v, %v", counts, err)
	}
	c := counts[0]
	rows, err := s.Rows(ctx)
	if err != nil {
		t.Fatalf("Rows: %v", err)
	}
	if c.Received != c.Unique+c.Duplicates || c.Unique != int64(len(all)) || c.Unique != rows+deleted() {
		t.Fatalf("counts %+v, %d stored events, %d alive, %d deleted", c, len(all), rows, deleted())
	}
	var served int64
	for after := (event.Position{}); ; {
		page, err := s.Events(ctx, "", after, 1000)
		if err != nil {
			t.Fatalf("Events: %v", err)
		}
		if len(page) == 0 {
			break
		}
		served += int64(len(page))
		after = page[len(page)-1].Pos
	}
	if served != rows {
		t.Fatalf("Events serves %d, %d alive", served, rows)
	}
	// A commit whose events are all deleted leaves no row behind.
	var empty int
	if err := watch.QueryRow(ctx, `SELECT count(*) FROM event_commits c
		WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.txid = c.txid)`).Scan(&empty); err != nil || empty != 0 {
		t.Fatalf("%d commits without events left (%v)", empty, err)
	}
	// Nothing lost: every event is alive or its key remembered.
	for i := 0; i < len(all); i += 1000 {
		p, err := s.Persist(ctx, &process.Batch{Events: all[i:min(i+1000, len(all))]})
		if err != nil {
			t.Fatalf("persist again: %v", err)
		}
		for j, isNew := range p.New {
			if isNew {
				t.Fatalf("event %s stored again: it was lost", all[i+j].EventID)
			}
		}
	}
	t.Logf("%d events stored, %d deleted before and at the kill, %d alive", len(all), deleted(), rows)
}
