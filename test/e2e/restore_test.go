package e2e

import (
	"context"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The store goes back in time under a running pipeline: every acknowledged
// event Kafka still holds must end stored exactly once, with exact counters,
// although Redis still marks as done the events the store lost.

// Logged by the workers when they see the store went back in time.
const (
	wentBack = "went back in time"
	wasReset = "is new or was reset"
)

// TestRestoreFromDump: a pg_dump taken mid-run is restored (the workers
// stopped meanwhile, as an operator would). The restored store keeps its
// identity, so the Redis marks of the events stored after the dump are
// under the same keys.
func TestRestoreFromDump(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 2})
	dump := filepath.Join(t.TempDir(), "dump.sql")
	defaultChaos.run(t, ctx, s, func(func() bool) {
		pgTool(t, ctx, "pg_dump", "--no-owner", "--file", dump, s.pgURL)
		s.waitReceivedMore(t, ctx, 5000) // stored and marked done after the dump
		for _, w := range s.workers {
			w.stop(t, 20*time.Second)
		}
		s.recreateDatabase(t, ctx)
		pgTool(t, ctx, "psql", "--quiet", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "--file", dump, s.pgURL)
		t.Logf("restored the dump at received=%d", s.mustStats(t, ctx).Received)
		for _, w := range s.workers {
			w.start(t)
		}
		for _, w := range s.workers {
			w.waitReady(t, time.Minute)
		}
	})
	s.wantLogged(t, wentBack)
}

// TestDatabaseLosesLastCommits: the database comes back without its last
// commits (a failover to a replica that lagged), under running workers.
func TestDatabaseLosesLastCommits(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	pg := startPostgres(t)
	s := newStack(t, stackOptions{workers: 2, postgresURL: pg.url})
	image := filepath.Join(pg.dir, "image")
	defaultChaos.run(t, ctx, s, func(func() bool) {
		// A crash image of the data directory, as a replica holds it.
		pg.stop(t)
		run(t, "cp", "-a", pg.data, image)
		pg.start(t)
		s.waitReceivedMore(t, ctx, 5000)
		pg.stop(t)
		run(t, "rm", "-rf", pg.data)
		run(t, "mv", image, pg.data)
		pg.start(t)
		s.db.Reset()
		t.Logf("the database came back at received=%d", s.mustStats(t, ctx).Received)
	})
	s.wantLogged(t, wentBack)
}

// TestFreshDatabaseSameGroup: the database is replaced by an empty one
// behind the same consumer group and Redis: the records Kafka holds are all
// stored again, although the group committed offsets at their end.
func TestFreshDatabaseSameGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 2})
	rep := s.mustPublish(t, ctx, "--events", "4000", "--duplicates", "0.2", "--topics", "5", "--batch", "200",
		"--concurrency", "4", "--run-id", "reset-"+randomHex(6))
	first := s.checkExact(t, ctx, rep, 0)

	for _, w := range s.workers {
		w.stop(t, 20*time.Second)
	}
	s.recreateDatabase(t, ctx)
	s.migrate(t)
	for _, w := range s.workers {
		w.start(t)
	}
	for _, w := range s.workers {
		w.waitReady(t, time.Minute)
	}
	again := s.checkExact(t, ctx, rep, 0)
	if again != first {
		t.Errorf("after the reset: %s; before it: %s", again, first)
	}
	s.wantLogged(t, wasReset)
}

// TestFreshDatabaseUnderRunningWorkers: the database is replaced by an
// empty one while the workers run. Their next batch finds no offset where
// they expect one, and they consume every retained record again.
func TestFreshDatabaseUnderRunningWorkers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 2})
	args := []string{"--events", "3000", "--duplicates", "0.2", "--topics", "5", "--batch", "200",
		"--concurrency", "4"}
	first := s.mustPublish(t, ctx, append(args, "--run-id", "before-"+randomHex(6))...)
	s.checkExact(t, ctx, first, 0)

	s.recreateDatabase(t, ctx)
	s.migrate(t)
	// The counters start again from nothing while the old records are
	// read again: the publisher's own check of /stats cannot hold.
	r := s.publish(ctx, append(args, "--run-id", "after-"+randomHex(6), "--verify=false")...)
	if r.rep == nil || r.err != nil || r.rep.Unacknowledged != 0 {
		t.Fatalf("publisher: %v, report %+v\n%s", r.err, r.rep, r.stderr)
	}
	second := r.rep
	c := s.checkExact(t, ctx, nil, 0)
	for _, rep := range []*report{first, second} {
		s.checkRunStored(t, ctx, rep)
	}
	if want := first.DistinctAcknowledged + second.DistinctAcknowledged; c.unique != want {
		t.Errorf("unique_processed %d, want the %d distinct events of both runs", c.unique, want)
	}
	s.wantLogged(t, wasReset)
}

// checkRunStored checks that each acknowledged event of a publisher run is
// stored exactly once.
func (s *stack) checkRunStored(t *testing.T, ctx context.Context, rep *report) {
	t.Helper()
	prefix := rep.RunID + "-"
	var rows, ids, lo, hi int64
	err := s.db.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id),
			coalesce(min(substr(event_id, length($1) + 1)::bigint), -1),
			coalesce(max(substr(event_id, length($1) + 1)::bigint), -1)
		FROM events WHERE starts_with(event_id, $1)`, prefix).Scan(&rows, &ids, &lo, &hi)
	if err != nil {
		t.Fatalf("read the run's events: %v", err)
	}
	if rows != rep.DistinctAcknowledged || ids != rows || lo != 0 || hi != rep.DistinctEvents-1 {
		t.Errorf("stored %d rows (%d distinct ids, numbers %d..%d) of run %s; want each of the %d acknowledged events once",
			rows, ids, lo, hi, rep.RunID, rep.DistinctAcknowledged)
	}
}

// pgTool runs a Postgres client program of the installed server, the
// version of the servers the tests run.
func pgTool(t *testing.T, ctx context.Context, prog string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(postgresBinDir(t), prog), args...)
	cmd.Env = baseEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", prog, err, out)
	}
}

func run(t *testing.T, prog string, args ...string) {
	t.Helper()
	if out, err := exec.Command(prog, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
}

// recreateDatabase drops the stack's database, cutting its sessions off,
// and creates it again empty.
func (s *stack) recreateDatabase(t *testing.T, ctx context.Context) {
	t.Helper()
	u, err := url.Parse(s.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	ident := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("connect to the maintenance database: %v", err)
	}
	defer conn.Close(context.Background())
	for _, q := range []string{"DROP DATABASE " + ident + " WITH (FORCE)",
		"CREATE DATABASE " + ident + " TEMPLATE template0 ENCODING 'UTF8'"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s.db.Reset() // its sessions were cut off
}

// waitReceivedMore waits until the pipeline has counted n more events.
func (s *stack) waitReceivedMore(t *testing.T, ctx context.Context, n int64) {
	t.Helper()
	from := s.mustStats(t, ctx).Received
	var last stats
	if !waitFor(ctx, 100*time.Millisecond, func() bool {
		st, err := s.stats(ctx)
		last = st
		return err == nil && st.Received >= from+n
	}) {
		t.Fatalf("the pipeline did not count %d more events after %d (last %+v)", n, from, last)
	}
}

// mustStats reads /stats, waiting out the errors of a query service whose
// database sessions were just cut off.
func (s *stack) mustStats(t *testing.T, ctx context.Context) stats {
	t.Helper()
	var st stats
	var err error
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !waitFor(wctx, 100*time.Millisecond, func() bool { st, err = s.stats(wctx); return err == nil }) {
		t.Fatalf("GET /stats: %v", err)
	}
	return st
}

// wantLogged checks that some worker logged a message containing msg.
func (s *stack) wantLogged(t *testing.T, msg string) {
	t.Helper()
	n := 0
	for _, w := range s.workers {
		n += countInLog(w.log, msg)
	}
	if n == 0 {
		t.Errorf("no worker logged %q", msg)
	}
}
