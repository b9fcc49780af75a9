package e2e

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// chaosRun publishes at a bounded rate, calls act once the pipeline is well
// into the run, then checks the exact counts. The publisher retries like an
// at-least-once client, long enough to outlast the outages.
type chaosRun struct {
	events int     // distinct events
	rate   float64 // events per second, so the run lasts 8–20 s
	// actAt is how many received events the pipeline has counted before act.
	actAt int64
}

var defaultChaos = chaosRun{events: 35000, rate: 4000, actAt: 10000}

func (c chaosRun) run(t *testing.T, ctx context.Context, s *stack, act func(publisherRunning func() bool)) counts {
	t.Helper()
	done := make(chan publishResult, 1)
	go func() {
		done <- s.publish(ctx, "--events", strconv.Itoa(c.events), "--duplicates", "0.3", "--topics", "20",
			"--batch", "200", "--concurrency", "8", "--rate", strconv.FormatFloat(c.rate, 'f', -1, 64),
			"--retries", "40", "--timeout", "15s", "--settle-timeout", "120s")
	}()
	var finished *publishResult
	publisherRunning := func() bool {
		if finished != nil {
			return false
		}
		select {
		case r := <-done:
			finished = &r
			return false
		default:
			return true
		}
	}

	var last stats
	var lastErr error
	reached := waitFor(ctx, 100*time.Millisecond, func() bool {
		if !publisherRunning() {
			return true
		}
		last, lastErr = s.stats(ctx)
		return lastErr == nil && last.Received >= c.actAt
	})
	switch {
	case !reached:
		t.Fatalf("the pipeline did not count %d events in time (last /stats %+v, %v)", c.actAt, last, lastErr)
	case !publisherRunning():
		t.Fatalf("the publisher finished before the chaos began (received %d): lower its rate", last.Received)
	}
	t.Logf("chaos at received=%d", last.Received)
	act(publisherRunning)
	if publisherRunning() {
		t.Logf("the publisher was still running after the chaos")
	} else {
		t.Logf("note: the publisher had finished (sending and verifying) by the end of the chaos")
	}

	if finished == nil {
		select {
		case r := <-done:
			finished = &r
		case <-ctx.Done():
			t.Fatalf("the publisher did not finish in time: %v", ctx.Err())
		}
	}
	s.logSummary(t)
	rep := s.checkPublished(t, *finished)
	return s.checkExact(t, ctx, rep, 0)
}

func TestChaos(t *testing.T) {
	// (a) A worker dies with batches claimed but not committed, and comes
	// back as a new group member.
	t.Run("kill-worker", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
		defer cancel()
		s := newStack(t, stackOptions{workers: 3})
		defaultChaos.run(t, ctx, s, func(func() bool) {
			w := s.workers[1]
			w.kill9(t)
			time.Sleep(time.Second)
			w.start(t)
			w.waitReady(t, time.Minute)
		})
	})

	// (b) Redis loses every lease and done mark: later copies go to the
	// store, which still decides.
	t.Run("redis-flushall", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
		defer cancel()
		r := startRedis(t)
		s := newStack(t, stackOptions{workers: 3, redisURL: r.url})
		defaultChaos.run(t, ctx, s, func(func() bool) {
			keys := r.client.DBSize(ctx).Val()
			if err := r.client.FlushAll(ctx).Err(); err != nil {
				t.Fatalf("FLUSHALL: %v", err)
			}
			t.Logf("FLUSHALL dropped %d claim keys", keys)
			if keys == 0 {
				t.Errorf("no claim keys in Redis mid-run: the workers do not use it")
			}
		})
	})

	// (c) Redis unreachable for 10 s: processing goes on through the store
	// alone, and returns to Redis when it is back.
	t.Run("redis-down", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
		defer cancel()
		r := startRedis(t)
		s := newStack(t, stackOptions{workers: 3, redisURL: r.url})
		run := chaosRun{events: 50000, rate: 4000, actAt: 8000}
		run.run(t, ctx, s, func(func() bool) {
			r.proc.kill9(t)
			time.Sleep(time.Second)
			before, err := s.stats(ctx)
			if err != nil {
				t.Fatalf("GET /stats: %v", err)
			}
			time.Sleep(9 * time.Second)
			after, err := s.stats(ctx)
			if err != nil {
				t.Fatalf("GET /stats: %v", err)
			}
			t.Logf("without Redis the workers stored %d events and counted %d", after.Unique-before.Unique,
				after.Received-before.Received)
			if after.Received == before.Received {
				t.Errorf("no event processed in the 9 s without Redis: processing stalled")
			}
			r.start(t)
		})
		// The restarted Redis started empty: once one more event is
		// processed, it holds claim keys again if the workers came back.
		s.publishOne(t, ctx, "after-redis-"+randomHex(4))
		if n := r.client.DBSize(ctx).Val(); n == 0 {
			t.Errorf("Redis holds no claim key after it came back: the workers did not return to it")
		} else {
			t.Logf("Redis holds %d claim keys after it came back", n)
		}
	})

	// (d) Postgres crashes and restarts: batches in flight fail or commit
	// unseen; the offsets kept with the rows say which.
	t.Run("postgres-restart", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
		defer cancel()
		pg := startPostgres(t)
		s := newStack(t, stackOptions{workers: 3, postgresURL: pg.url})
		defaultChaos.run(t, ctx, s, func(func() bool) {
			pg.stop(t)
			time.Sleep(3 * time.Second)
			pg.start(t)
		})
	})

	// (e) Ingest dies with produce requests in flight; the publisher
	// retries what was not acknowledged.
	t.Run("kill-ingest", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
		defer cancel()
		s := newStack(t, stackOptions{workers: 3})
		defaultChaos.run(t, ctx, s, func(func() bool) {
			s.ingest.kill9(t)
			time.Sleep(time.Second)
			s.ingest.start(t)
			s.ingest.waitReady(t, time.Minute)
		})
	})

	// (f) A fourth worker joins mid-run: partitions move between live
	// workers, each finishing or abandoning its batches.
	t.Run("add-worker", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
		defer cancel()
		s := newStack(t, stackOptions{workers: 3})
		defaultChaos.run(t, ctx, s, func(func() bool) {
			w := s.newWorker(t)
			w.start(t)
			w.waitReady(t, time.Minute)
			s.waitMembers(t, ctx, 4)
		})
	})
}

// TestZombie: a worker frozen (SIGSTOP) in the middle of a store
// transaction, longer than its session timeout, loses its partitions while
// it holds their offset rows. Each step of that path is checked as it
// happens: the frozen worker is caught inside a transaction, the group moves
// on without it, a new owner waits for its row lock, and once thawed the
// zombie commits and the new owner is fenced by the stored offsets. When
// Postgres ends the zombie's transaction first (an idle-in-transaction
// timeout), there is nothing to fence. No record is counted twice or lost.
func TestZombie(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 3})
	zombie := s.workers[1]
	// count runs a query that counts sessions; a failed query counts none.
	count := func(q string, args ...any) int {
		var n int
		if err := s.db.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	run := chaosRun{events: 60000, rate: 4000, actAt: 10000}
	run.run(t, ctx, s, func(func() bool) {
		// Hold every batch at its offset fence, so the frozen worker is
		// caught inside a transaction.
		tx, err := s.db.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		if _, err := tx.Exec(ctx, `LOCK TABLE offsets IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
		if !waitFor(ctx, 50*time.Millisecond, func() bool {
			return count(`SELECT count(*) FROM pg_stat_activity
				WHERE application_name = $1 AND wait_event_type = 'Lock'`, zombie.name) >= 1
		}) {
			t.Fatalf("no batch of %s waits at the offset fence", zombie.name)
		}
		zombie.signal(t, syscall.SIGSTOP)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}

		// Its batch went through the fence and now waits for the frozen
		// client: a transaction holding the partition's offset row.
		var pid int
		if !waitFor(ctx, 50*time.Millisecond, func() bool {
			err := s.db.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
				WHERE application_name = $1 AND state = 'idle in transaction' LIMIT 1`, zombie.name).Scan(&pid)
			return err == nil
		}) {
			t.Fatalf("%s is not inside a store transaction while frozen", zombie.name)
		}
		// Past its session timeout the group goes on without it.
		s.waitMembers(t, ctx, 2)
		// A new owner of its partition reaches the fence and waits for the
		// zombie's row lock, unless Postgres ended that transaction first.
		blockedCtx, cancelBlocked := context.WithTimeout(ctx, time.Minute)
		blocked := waitFor(blockedCtx, 100*time.Millisecond, func() bool {
			return count(`SELECT count(*) FROM pg_stat_activity
				WHERE application_name LIKE 'worker-%' AND application_name <> $1
				AND $2::int = ANY (pg_blocking_pids(pid))`, zombie.name, pid) >= 1
		})
		cancelBlocked()
		alive := count(`SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'idle in transaction'`, pid) == 1
		zombie.signal(t, syscall.SIGCONT)

		switch {
		case alive && blocked:
			// Thawed, the zombie commits the batch it had begun; the new
			// owner, fenced by the offset the zombie stored, resumes after it.
			fencedCtx, cancelFenced := context.WithTimeout(ctx, time.Minute)
			defer cancelFenced()
			if !waitFor(fencedCtx, 200*time.Millisecond, func() bool { return fencings(s, zombie) > 0 }) {
				t.Errorf("the zombie's transaction was alive and blocking a new owner, yet no other worker was fenced")
			}
		case alive:
			t.Errorf("the zombie held its transaction for a minute after the group moved on, and no new owner waited for it")
		default:
			t.Logf("Postgres ended the zombie's transaction before it thawed: nothing to fence")
		}
	})
	if !zombie.running() {
		t.Errorf("the thawed worker exited; log:\n%s", tail(zombie.log, 20))
	}
}

// fencings counts the fencings logged by the workers other than but.
func fencings(s *stack, but *process) int {
	n := 0
	for _, w := range s.workers {
		if w != but {
			n += countInLog(w.log, "partition fenced")
		}
	}
	return n
}

// waitMembers waits until the group has n members, each assigned at least
// one partition of the events topic.
func (s *stack) waitMembers(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	var last string
	ok := waitFor(ctx, 250*time.Millisecond, func() bool {
		res, err := s.kafka.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{s.group}})
		if err != nil || len(res.Groups) != 1 {
			last = "describe group failed"
			return false
		}
		g := res.Groups[0]
		last = g.GroupState + " with " + strconv.Itoa(len(g.Members)) + " members"
		if g.GroupState != "Stable" || len(g.Members) != n {
			return false
		}
		for _, m := range g.Members {
			owned := 0
			for _, a := range m.MemberAssignments.Topics {
				if a.Topic == s.topic {
					owned += len(a.Partitions)
				}
			}
			if owned == 0 {
				last = "member " + m.MemberID + " owns no partition"
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("the group did not settle with %d members owning partitions (last: %s)", n, last)
	}
}
