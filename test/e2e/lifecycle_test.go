package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// migrationLockID is the advisory lock goose takes while it migrates (one
// per database).
const migrationLockID = 4097083626

// probe is one GET against a process: the status (0 when the connection
// failed) and the body.
func (p *process) probe(path string) (int, string) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + p.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// notReady returns the names /readyz reports failing, with the body; nil
// names when it answers 200.
func (p *process) notReady(t *testing.T) ([]string, string) {
	t.Helper()
	code, body := p.probe("/readyz")
	switch code {
	case http.StatusOK:
		return nil, body
	case http.StatusServiceUnavailable:
	default:
		t.Fatalf("%s /readyz: %d %s", p.name, code, body)
	}
	var r struct{ Failed map[string]string }
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("%s /readyz body %q: %v", p.name, body, err)
	}
	return slices.Sorted(maps.Keys(r.Failed)), body
}

// waitNotReady waits until /readyz answers 503 naming exactly want.
func (p *process) waitNotReady(t *testing.T, ctx context.Context, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	var body string
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !waitFor(ctx, 20*time.Millisecond, func() bool {
		if !p.running() {
			t.Fatalf("%s exited while waiting for its dependencies; log:\n%s", p.name, tail(p.log, 30))
		}
		got, body = p.notReady(t)
		return got != nil && slices.Equal(got, want)
	}) {
		t.Fatalf("%s /readyz: failing %v (%s), want exactly %v", p.name, got, body, want)
	}
}

// waitLog waits until the process logged msg.
func (p *process) waitLog(t *testing.T, ctx context.Context, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !waitFor(ctx, 20*time.Millisecond, func() bool { return countInLogExact(p.log, msg) > 0 }) {
		t.Fatalf("%s never logged %q; log:\n%s", p.name, msg, tail(p.log, 30))
	}
}

// countInLogExact counts the log lines whose message is msg.
func countInLogExact(path, msg string) int {
	n := 0
	for _, l := range logLines(path) {
		if l.Msg == msg {
			n++
		}
	}
	return n
}

type logLine struct{ Level, Msg string }

func logLines(path string) []logLine {
	var out []logLine
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	for line := range strings.Lines(string(b)) {
		var l logLine
		if json.Unmarshal([]byte(line), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// hostOf is the host:port of a URL.
func hostOf(t *testing.T, u string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatalf("parse %q: %v", u, err)
	}
	return parsed.Host
}

// TestListenFirst: ingest, query and worker started while Postgres, Redis
// and Kafka refuse connections (each behind a closed port) and while
// another process holds the migration lock. Each answers /healthz at once,
// reports what it waits for in /readyz, logs each wait once, never exits,
// and becomes ready as its dependencies come up, one after the other; the
// pipeline then works.
func TestListenFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	realPG := testdeps.NewPostgresDB(t)
	realRedis := testdeps.RedisURL(t)
	brokers := testdeps.KafkaBrokers(t)
	pgProxy := testdeps.NewProxy(t, hostOf(t, realPG))
	redisProxy := testdeps.NewProxy(t, hostOf(t, realRedis))
	kafkaProxy := testdeps.NewProxy(t, brokers[0])

	s := &stack{
		t:        t,
		pgURL:    pgProxy.URL(t, realPG),
		redisURL: redisProxy.URL(t, realRedis),
		brokers:  []string{kafkaProxy.Addr},
		logDir:   logDir(t),
		http:     &http.Client{Timeout: 10 * time.Second},
		group:    "e2e-" + randomHex(6),
		topic:    testdeps.NewKafkaTopic(t, partitions),
		dlq:      testdeps.NewKafkaTopic(t, 1),
	}
	tr := &kafka.Transport{MetadataTTL: time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	s.kafka = &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}
	db, err := pgxpool.New(ctx, realPG)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	s.db = db

	// Another process is migrating: the lock is held until released below.
	lockConn, err := pgx.Connect(ctx, realPG)
	if err != nil {
		t.Fatal(err)
	}
	defer lockConn.Close(context.Background())
	if _, err := lockConn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLockID)); err != nil {
		t.Fatalf("take the migration lock: %v", err)
	}

	addr := freeAddr(t)
	s.ingest = newProcess(t, s.logDir, "ingest", bin.ingest, s.ingestEnv(addr), addr)
	addr = freeAddr(t)
	s.query = newProcess(t, s.logDir, "query", bin.query, s.queryEnv(addr), addr)
	worker := s.newWorker(t)
	procs := []*process{s.ingest, s.query, worker}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range procs {
				t.Logf("---- %s: last lines of %s ----\n%s", p.name, p.log, tail(p.log, 40))
			}
		}
	})
	for _, p := range procs {
		started := time.Now()
		p.start(t)
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		ok := waitFor(wctx, 5*time.Millisecond, func() bool { code, _ := p.probe("/healthz"); return code == http.StatusOK })
		wcancel()
		if !ok {
			t.Fatalf("%s does not answer /healthz while its dependencies are down; log:\n%s", p.name, tail(p.log, 30))
		}
		t.Logf("%s answered /healthz %v after start", p.name, time.Since(started).Round(time.Millisecond))
	}

	s.ingest.waitNotReady(t, ctx, "kafka")
	s.query.waitNotReady(t, ctx, "postgres", "migrations")
	worker.waitNotReady(t, ctx, "postgres", "schema", "kafka", "redis")
	if _, body := worker.notReady(t); !strings.Contains(body, "waiting for postgres") {
		t.Fatalf("worker /readyz does not say the schema waits for postgres: %s", body)
	}
	s.ingest.waitLog(t, ctx, "waiting for kafka")
	s.query.waitLog(t, ctx, "waiting for postgres")
	for _, dep := range []string{"postgres", "kafka", "redis"} {
		worker.waitLog(t, ctx, "waiting for "+dep)
	}

	// Postgres answers; the migration lock is still held elsewhere.
	pgProxy.Up(t)
	s.query.waitLog(t, ctx, "postgres ready")
	worker.waitLog(t, ctx, "postgres ready")
	s.query.waitNotReady(t, ctx, "migrations")
	worker.waitNotReady(t, ctx, "schema", "kafka", "redis")
	for _, p := range []*process{s.query, worker} {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		var body string
		if !waitFor(wctx, 20*time.Millisecond, func() bool {
			_, body = p.notReady(t)
			return strings.Contains(body, "migration lock")
		}) {
			t.Fatalf("%s /readyz does not say it waits for the migration lock: %s", p.name, body)
		}
		wcancel()
	}

	if _, err := lockConn.Exec(ctx, "SELECT pg_advisory_unlock($1)", int64(migrationLockID)); err != nil {
		t.Fatalf("release the migration lock: %v", err)
	}
	s.query.waitReady(t, time.Minute)
	worker.waitNotReady(t, ctx, "kafka", "redis")

	redisProxy.Up(t)
	worker.waitNotReady(t, ctx, "kafka")

	kafkaProxy.Up(t)
	s.ingest.waitReady(t, time.Minute)
	worker.waitReady(t, time.Minute)

	// One line when each wait began and one when it ended, whatever the
	// number of attempts; no process exited.
	wantLogs := map[*process][]string{
		s.ingest: {"waiting for kafka", "kafka ready"},
		s.query:  {"waiting for postgres", "postgres ready", "migrations ready"},
		worker: {"waiting for postgres", "postgres ready", "schema ready", "waiting for kafka", "kafka ready",
			"waiting for redis", "redis ready"},
	}
	for p, msgs := range wantLogs {
		for _, msg := range msgs {
			if n := countInLogExact(p.log, msg); n != 1 {
				t.Errorf("%s logged %q %d times, want once", p.name, msg, n)
			}
		}
		if !p.running() {
			t.Errorf("%s exited", p.name)
		}
	}
	s.publishOne(t, ctx, "after-late-dependencies")
}

// TestIngestSIGTERMUnderLoad: publishers keep posting while ingest gets
// SIGTERM. Readiness turns false at once, publishes are accepted through
// the drain delay, then ingest stops accepting and exits 0. Every answer
// is 202, 503 or no answer (a connection refused); once the workers have
// drained the topic, every acknowledged event is in the store.
func TestIngestSIGTERMUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 2})
	addr := freeAddr(t)
	ing := newProcess(t, s.logDir, "ingest-drain", bin.ingest,
		append(s.ingestEnv(addr), "AGGREGATOR_SHUTDOWN_DELAY=2s", "AGGREGATOR_SHUTDOWN_TIMEOUT=20s"), addr)
	ing.start(t)
	ing.waitReady(t, time.Minute)

	client := &http.Client{Timeout: 30 * time.Second}
	var (
		mu            sync.Mutex
		acked         []string
		unexpected    []string
		total         atomic.Int64
		notReady      atomic.Bool
		afterNotReady atomic.Int64
		refused       atomic.Int64
		maybe         atomic.Int64 // events of 503 answers
		unanswered    atomic.Int64 // events of requests without an answer
		gone          atomic.Bool
		wg            sync.WaitGroup
	)
	for w := range 16 {
		wg.Go(func() {
			for b := 0; !gone.Load(); b++ {
				var body bytes.Buffer
				var ids []string
				body.WriteByte('[')
				for i := range 10 {
					id := fmt.Sprintf("w%d-b%d-%d", w, b, i)
					ids = append(ids, id)
					if i > 0 {
						body.WriteByte(',')
					}
					fmt.Fprintf(&body, `{"topic":"drain","event_id":%q,"timestamp":"2026-11-25T10:00:00Z","source":"e2e"}`, id)
				}
				body.WriteByte(']')
				sentNotReady := notReady.Load()
				resp, err := client.Post("http://"+addr+"/publish", "application/json", &body)
				if err != nil {
					// Not acknowledged: refused, or (rarely) cut by Go's
					// closing of a connection it saw idle just as a request
					// arrived on it. The client retries; dedup absorbs it.
					refused.Add(1)
					unanswered.Add(int64(len(ids)))
					continue
				}
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusAccepted:
					mu.Lock()
					acked = append(acked, ids...)
					mu.Unlock()
					total.Add(int64(len(ids)))
					if sentNotReady {
						afterNotReady.Add(1)
					}
				case http.StatusServiceUnavailable:
					maybe.Add(int64(len(ids)))
				default:
					mu.Lock()
					unexpected = append(unexpected, fmt.Sprintf("%d %s", resp.StatusCode, msg))
					mu.Unlock()
				}
			}
		})
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	if !waitFor(wctx, 5*time.Millisecond, func() bool { return total.Load() >= 2000 }) {
		t.Fatalf("only %d events acknowledged before the stop", total.Load())
	}
	wcancel()

	ing.signal(t, syscall.SIGTERM)
	wctx, wcancel = context.WithTimeout(ctx, time.Minute)
	if !waitFor(wctx, 5*time.Millisecond, func() bool {
		code, body := ing.probe("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
	}) {
		t.Fatal("/readyz did not turn 503 after SIGTERM")
	}
	wcancel()
	notReady.Store(true)
	ing.waitExit(t, time.Minute)
	gone.Store(true)
	wg.Wait()
	if !strings.Contains(tail(ing.log, 3), "exited: <nil>") {
		t.Fatalf("ingest did not exit 0 after SIGTERM:\n%s", tail(ing.log, 10))
	}
	if len(unexpected) > 0 {
		t.Fatalf("%d answers neither 202, 503 nor refused, e.g. %s", len(unexpected), unexpected[0])
	}
	if afterNotReady.Load() == 0 {
		t.Fatal("no publish was accepted once readiness was false: the drain delay did not serve")
	}

	s.waitDrained(t, ctx, 2*time.Minute)
	rows, err := s.db.Query(ctx, `SELECT event_id FROM events WHERE topic = 'drain'`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		stored[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range acked {
		if !stored[id] {
			t.Fatalf("acknowledged event %s lost in the shutdown", id)
		}
	}
	// Nothing stored that the client was not told about or left without
	// an answer (which it retries).
	if n := int64(len(stored)); n > int64(len(acked))+maybe.Load()+unanswered.Load() {
		t.Fatalf("%d stored, %d acknowledged, %d in 503 answers, %d in unanswered requests",
			n, len(acked), maybe.Load(), unanswered.Load())
	}
	t.Logf("%d events acknowledged (%d requests after readiness turned false), %d stored, %d requests without an answer, %d events answered 503",
		len(acked), afterNotReady.Load(), len(stored), refused.Load(), maybe.Load())
}

// sessionTimeout is the consumer group's session timeout (the consumer's
// default): without leaving the group, a stopped worker's partitions would
// wait that long before moving.
const sessionTimeout = 10 * time.Second

// TestWorkerSIGTERMMidRun: a worker stopped with SIGTERM while events flow
// finishes its batches, leaves the group and exits 0; the other takes every
// partition sooner than a session timeout, and the run ends exact.
func TestWorkerSIGTERMMidRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 2})
	defaultChaos.run(t, ctx, s, func(func() bool) {
		s.waitMembers(t, ctx, 2)
		w := s.workers[1]
		stopped := time.Now()
		w.signal(t, syscall.SIGTERM)
		s.waitMembers(t, ctx, 1)
		moved := time.Since(stopped)
		w.waitExit(t, time.Minute)
		t.Logf("partitions moved %v after SIGTERM", moved.Round(time.Millisecond))
		if moved >= sessionTimeout {
			t.Errorf("the partitions moved %v after SIGTERM, not before the %v session timeout: the worker did not leave the group",
				moved, sessionTimeout)
		}
		if !strings.Contains(tail(w.log, 3), "exited: <nil>") {
			t.Errorf("the worker did not exit 0 after SIGTERM:\n%s", tail(w.log, 10))
		}
		if n := countInLog(w.log, "abandoning"); n > 0 {
			t.Errorf("the worker abandoned its batches instead of finishing them")
		}
	})
}

// waitExit waits for the current run to end.
func (p *process) waitExit(t *testing.T, timeout time.Duration) {
	t.Helper()
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	select {
	case <-exited:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v; log:\n%s", p.name, timeout, tail(p.log, 30))
	}
}

// TestWorkerAbandonsStuckBatch: a worker whose batch cannot commit (the
// counters table is locked) gets SIGTERM; after AGGREGATOR_SHUTDOWN_TIMEOUT
// it abandons the batch and exits non-zero instead of hanging. Its
// transaction rolls back, and once the lock is gone the other worker stores
// every event exactly once.
func TestWorkerAbandonsStuckBatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 1})
	addr := freeAddr(t)
	stuck := newProcess(t, s.logDir, "worker-stuck", bin.worker,
		append(s.workerEnv(addr, "worker-stuck"), "AGGREGATOR_SHUTDOWN_TIMEOUT=2s"), addr)
	s.workers = append(s.workers, stuck)
	stuck.start(t)
	stuck.waitReady(t, time.Minute)
	s.waitMembers(t, ctx, 2)

	lock, err := s.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(context.Background())
	if _, err := lock.Exec(ctx, "LOCK TABLE counters IN EXCLUSIVE MODE"); err != nil {
		t.Fatalf("lock the counters: %v", err)
	}

	const events = 300
	var body bytes.Buffer
	body.WriteByte('[')
	for i := range events {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"topic":"stuck","event_id":"e-%d","timestamp":"2026-11-25T10:00:00Z","source":"e2e"}`, i)
	}
	body.WriteByte(']')
	resp, err := s.http.Post(s.ingestURL()+"/publish", "application/json", &body)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %s", resp.Status)
	}
	// Both workers have a batch waiting on the lock.
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	var waiting int
	if !waitFor(wctx, 20*time.Millisecond, func() bool {
		err := s.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting >= 2
	}) {
		t.Fatalf("%d batches waiting on the counters lock, want one per worker", waiting)
	}
	wcancel()

	stuck.signal(t, syscall.SIGTERM)
	stuck.waitExit(t, time.Minute)
	if !strings.Contains(tail(stuck.log, 3), "exited: exit status 1") {
		t.Fatalf("the stuck worker did not exit 1 after abandoning:\n%s", tail(stuck.log, 10))
	}
	if countInLog(stuck.log, "abandoning the batches in flight") != 1 {
		t.Fatalf("the stuck worker did not log its abandonment:\n%s", tail(stuck.log, 10))
	}

	if err := lock.Rollback(ctx); err != nil {
		t.Fatalf("release the counters: %v", err)
	}
	s.waitDrained(t, ctx, 2*time.Minute)
	st, err := s.stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM events WHERE topic = 'stuck'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if st.Received != events || st.Unique != events || st.Duplicates != 0 || rows != events {
		t.Fatalf("after the abandoned batch: %+v, %d rows; want %d received, unique and stored once", st, rows, events)
	}
}
