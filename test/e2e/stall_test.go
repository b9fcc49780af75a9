package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// stallBound is how soon after a worker froze inside its transaction every
// event already acknowledged into its partitions must be stored, with the
// default session bounds: the group drops the silent member after its 10 s
// session timeout while the server ends the frozen sessions after 10 s idle
// in their transactions (the new owner's 5 s lock timeout retries until
// then), so about 10-15 s, plus the rebalance and a loaded machine's margin.
// Without the bounds the partitions stay stuck until the worker thaws.
const stallBound = 30 * time.Second

// TestStalledWorker: a worker frozen (SIGSTOP) inside its batch transaction,
// holding the offset row lock of a partition and its transaction id, under
// load. With the default session bounds the server ends its session, the
// other workers take its partitions over and store what was acknowledged
// into them within stallBound, while it is still frozen. Thawed, it finds its
// session gone, rejoins, and the run ends exact.
func TestStalledWorker(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 3})
	// The worker to freeze names its Postgres sessions, so the test finds
	// them in pg_stat_activity.
	app := "e2e-stalled-" + randomHex(4)
	w := s.workers[1]
	w.stop(t, 20*time.Second)
	w.env = append(w.env, "AGGREGATOR_POSTGRES_URL="+withQueryParam(t, s.pgURL, "application_name", app))
	w.start(t)
	w.waitReady(t, time.Minute)

	// Late enough that the start's rebalances are over and every partition
	// of the worker has its offset row, which the frozen batch then locks.
	run := chaosRun{events: 90000, rate: 3000, actAt: 20000}
	run.run(t, ctx, s, func(publisherRunning func() bool) {
		// Hold every batch at its offset fence, so the worker is frozen
		// inside a transaction whatever it was doing.
		tx, err := s.db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		if _, err := tx.Exec(ctx, `LOCK TABLE offsets IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
		if !waitFor(ctx, 20*time.Millisecond, func() bool {
			var n int
			err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE application_name = $1 AND wait_event_type = 'Lock'`, app).Scan(&n)
			return err == nil && n > 0
		}) {
			t.Fatal("no batch of the worker to freeze reached the offset fence")
		}
		w.signal(t, syscall.SIGSTOP)
		frozenAt := time.Now()
		frozen := true
		defer func() {
			if frozen {
				w.signal(t, syscall.SIGCONT)
			}
		}()
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}

		// Its batch goes through the fence and the insert, then waits for
		// the frozen process: idle in transaction, holding the row locks.
		// Once none of its statements is still running, every session it
		// had at the fence sits there.
		var pids []int32
		if !waitFor(ctx, 20*time.Millisecond, func() bool {
			var active int
			err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE application_name = $1 AND state = 'active'`, app).Scan(&active)
			if err != nil || active > 0 {
				return false
			}
			pids, err = collectInt32(s.db.Query(ctx, `SELECT pid FROM pg_stat_activity
				WHERE application_name = $1 AND state = 'idle in transaction'`, app))
			return err == nil && len(pids) > 0
		}) {
			t.Fatal("the frozen worker's sessions never sat idle in their transactions")
		}
		// Its partitions whose offset rows are locked: by the frozen
		// transactions, as the others' batches come and go.
		owned := assignedPartitions(t, w.log)
		var locked []int
		for _, p := range s.lockedPartitions(t, ctx) {
			if slices.Contains(owned, p) {
				locked = append(locked, p)
			}
		}
		if len(locked) == 0 {
			t.Fatalf("the frozen worker holds no offset row of its partitions %v", owned)
		}
		t.Logf("worker %s frozen in %d transaction(s) (pids %v) holding the offsets of partitions %v",
			w.name, len(pids), pids, locked)

		// Every record already in those partitions (the frozen batch's and
		// those queued behind it, all acknowledged by now) must be stored
		// within stallBound, while the worker is still frozen.
		ends, err := s.logEndOffsets(ctx, s.topic, partitions)
		if err != nil {
			t.Fatal(err)
		}
		since := time.Now()
		var stored map[int]int64
		bctx, bcancel := context.WithTimeout(ctx, stallBound)
		flowing := waitFor(bctx, 100*time.Millisecond, func() bool {
			stored, err = s.storedOffsets(bctx)
			if err != nil {
				return false
			}
			for _, p := range locked {
				if stored[p] < ends[p] {
					return false
				}
			}
			return true
		})
		bcancel()
		latency := time.Since(since)
		var progress []string
		for _, p := range locked {
			progress = append(progress, fmt.Sprintf("p%d %d/%d", p, stored[p], ends[p]))
		}
		if !flowing {
			t.Fatalf("the frozen worker's partitions did not flow within %v (stored/log end at the freeze: %s)",
				stallBound, strings.Join(progress, ", "))
		}
		t.Logf("the frozen worker's partitions flow again: the records they held %.1f s after the freeze were stored %.1f s later (bound %v; %s)",
			since.Sub(frozenAt).Seconds(), latency.Seconds(), stallBound, strings.Join(progress, ", "))

		// The server ended the frozen sessions; the process is still stopped.
		var left int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)`, pids).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Errorf("%d frozen session(s) still open after their partitions moved", left)
		}
		if !publisherRunning() {
			t.Logf("note: the publisher finished while the worker was frozen")
		}
		w.signal(t, syscall.SIGCONT)
		frozen = false
		s.waitMembers(t, ctx, 3)
		if !w.running() {
			t.Errorf("the thawed worker exited; log:\n%s", tail(w.log, 20))
		}
	})
}

// lockedPartitions are the partitions of the stack's topic whose offset row
// another transaction holds.
func (s *stack) lockedPartitions(t *testing.T, ctx context.Context) []int {
	t.Helper()
	tx, err := s.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	all, err := collectInt32(tx.Query(ctx, `SELECT partition FROM offsets WHERE topic = $1`, s.topic))
	if err != nil {
		t.Fatal(err)
	}
	free, err := collectInt32(tx.Query(ctx, `SELECT partition FROM offsets WHERE topic = $1 FOR UPDATE SKIP LOCKED`, s.topic))
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, p := range all {
		if !slices.Contains(free, p) {
			out = append(out, int(p))
		}
	}
	slices.Sort(out)
	return out
}

func collectInt32(rows pgx.Rows, err error) ([]int32, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int32
	for rows.Next() {
		var v int32
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// assignedPartitions are the partitions a worker's log says it was given last.
func assignedPartitions(t *testing.T, log string) []int {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	var last []int
	for line := range strings.Lines(string(b)) {
		var l struct {
			Msg        string
			Partitions []int
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "consumer group generation" {
			last = l.Partitions
		}
	}
	if len(last) == 0 {
		t.Fatalf("%s names no partition assignment", log)
	}
	return last
}
