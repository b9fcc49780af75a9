// Package postgres is the Store and Reader of the distributed mode, on pgx.
// One Persist is one transaction of two round trips: (begin, offset fence,
// batch insert) pipelined, then (counters, commit record, commit) pipelined.
package postgres

import (
	"cmp"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store persists batches into Postgres and reads them back.
type Store struct {
	pool *pgxpool.Pool
}

// Open returns a Store on a pool of at most maxConns connections (the URL's
// pool_max_conns or pgx's default when maxConns <= 0). It does not connect:
// call Ping to know whether Postgres answers.
func Open(ctx context.Context, url string, maxConns int, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	for _, o := range opts {
		o(cfg)
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(min(maxConns, 1<<20))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres pool: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Option configures the pool.
type Option func(*pgxpool.Config)

// WithTracerProvider traces every query as a child span of the caller's.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *pgxpool.Config) {
		c.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithTracerProvider(tp))
	}
}

// Close waits for borrowed connections to come back and closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", err)
	}
	return nil
}

// Migrate applies the embedded migrations. It is idempotent, and a session
// advisory lock makes processes that migrate at once take turns.
func (s *Store) Migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	// A new locker per run: its retry budget is spent as it is used. Probe
	// every second (not goose's 5 s), for up to 5 minutes.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// Rows are inserted sorted by key (one batch is one transaction and one
// processing instant), so two batches with overlapping keys lock them in the
// same order and cannot deadlock. ORDER BY n keeps that order in seq.
const insertEvents = `INSERT INTO events (topic, event_id, ts, source, payload)
SELECT topic, event_id, ts, source, payload
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::json[])
	WITH ORDINALITY AS u (topic, event_id, ts, source, payload, n)
ORDER BY n
ON CONFLICT (topic, event_id) DO NOTHING
RETURNING topic, event_id`

const upsertCounters = `INSERT INTO counters AS c (topic, partition, received, unique_processed, duplicate_dropped)
SELECT topic, $2, received, uniq, dup
FROM unnest($1::text[], $3::bigint[], $4::bigint[], $5::bigint[]) AS u (topic, received, uniq, dup)
ON CONFLICT (topic, partition) DO UPDATE SET
	received = c.received + excluded.received,
	unique_processed = c.unique_processed + excluded.unique_processed,
	duplicate_dropped = c.duplicate_dropped + excluded.duplicate_dropped`

// The first batch of a partition inserts its offset; later ones move it only
// from where this consumer started, and only if it is there. The row lock it
// takes first makes a zombie and the new owner of a partition wait for each
// other.
const (
	fenceFirstOffset = `INSERT INTO offsets AS o (topic, partition, next) VALUES ($1, $2, $3)
ON CONFLICT (topic, partition) DO UPDATE SET next = excluded.next WHERE o.next = $4`
	fenceOffset = `UPDATE offsets SET next = $3 WHERE topic = $1 AND partition = $2 AND next = $4`
)

// A batch that stored rows numbers its commit last, under a lock held until
// it has committed (and so is visible): commits get increasing pos in the
// order they become visible, and GET /events pages by (pos, seq). The lock
// is taken after every row lock of the transaction, so it cannot be part of
// a deadlock. The key is this table's own; advisory locks are per database.
const (
	lockCommitOrder = `SELECT pg_advisory_xact_lock(7305508455932928001)`
	recordCommit    = `INSERT INTO event_commits (pos, txid) VALUES (nextval('event_commit_pos'), pg_current_xact_id())`
)

// Persist writes the batch's new rows, its counters and its offset in one
// transaction. The unique key on (topic, event_id) decides what is new, and
// a key remembered from an event retention deleted makes a duplicate too.
func (s *Store) Persist(ctx context.Context, b *process.Batch) (process.Persisted, error) {
	out := process.Persisted{New: make([]bool, len(b.Events))}
	if len(b.Events) == 0 && len(b.Dropped) == 0 && b.Offset == nil {
		return out, nil
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return process.Persisted{}, fmt.Errorf("acquire connection: %w", err)
	}
	defer conn.Release()
	committed := false
	defer func() {
		if !committed {
			rollback(conn)
		}
	}()

	if err := insert(ctx, conn, b, out.New); err != nil {
		return process.Persisted{}, err
	}
	if err := countAndCommit(ctx, conn, b, out.New); err != nil {
		return process.Persisted{}, err
	}
	committed = true
	return out, nil
}

// insert runs the first round trip: begin, fence the offset, insert the
// rows; it marks in isNew the events that were inserted.
func insert(ctx context.Context, conn *pgxpool.Conn, b *process.Batch, isNew []bool) error {
	q := &pgx.Batch{}
	q.Queue("BEGIN")
	if o := b.Offset; o != nil {
		fence := fenceOffset
		if o.First {
			fence = fenceFirstOffset
		}
		q.Queue(fence, o.Topic, o.Partition, o.Next, o.From)
	}
	var first map[event.Key]int
	if len(b.Events) > 0 {
		var cols columns
		cols, first = sortedColumns(b.Events)
		q.Queue(insertEvents, cols.topic, cols.id, cols.ts, cols.source, cols.payload)
		q.Queue(expiredCopies, cols.topic, cols.id)
	}
	br := conn.SendBatch(ctx, q)
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if o := b.Offset; o != nil {
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("record offset: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("record offset %s/%d from %d: %w", o.Topic, o.Partition, o.From, process.ErrFenced)
		}
	}
	if len(b.Events) == 0 {
		if err := br.Close(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		return nil
	}
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	var k event.Key
	for rows.Next() {
		if err := rows.Scan(&k.Topic, &k.EventID); err != nil {
			rows.Close()
			return fmt.Errorf("insert events: %w", err)
		}
		i, ok := first[k]
		if !ok {
			rows.Close()
			return fmt.Errorf("insert events: returned key %v not in the batch", k)
		}
		isNew[i] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	copies, err := br.Query()
	if err != nil {
		return fmt.Errorf("drop late copies: %w", err)
	}
	if err := dropExpiredCopies(copies, first, isNew); err != nil {
		return err
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

// countAndCommit runs the second round trip: the counters of the batch as
// one upsert, then commit.
func countAndCommit(ctx context.Context, conn *pgxpool.Conn, b *process.Batch, isNew []bool) error {
	type tally struct{ received, unique int64 }
	per := make(map[string]*tally, 4)
	get := func(topic string) *tally {
		t := per[topic]
		if t == nil {
			t = &tally{}
			per[topic] = t
		}
		return t
	}
	for topic, n := range b.Dropped {
		if n != 0 {
			get(topic).received += int64(n)
		}
	}
	for i := range b.Events {
		t := get(b.Events[i].Topic)
		t.received++
		if isNew[i] {
			t.unique++
		}
	}
	// Sorted, so two batches of one shard lock their counter rows in the
	// same order.
	topics := make([]string, 0, len(per))
	for topic := range per {
		topics = append(topics, topic)
	}
	slices.Sort(topics)
	received := make([]int64, len(topics))
	unique := make([]int64, len(topics))
	dups := make([]int64, len(topics))
	for i, topic := range topics {
		t := per[topic]
		received[i], unique[i], dups[i] = t.received, t.unique, t.received-t.unique
	}

	stored := slices.Contains(isNew, true)
	q := &pgx.Batch{}
	if len(topics) > 0 {
		q.Queue(upsertCounters, topics, b.Shard, received, unique, dups)
	}
	if stored {
		q.Queue(lockCommitOrder)
		q.Queue(recordCommit)
	}
	q.Queue("COMMIT")
	br := conn.SendBatch(ctx, q)
	defer br.Close()
	if len(topics) > 0 {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("update counters: %w", err)
		}
	}
	if stored {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("lock commit order: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("record commit: %w", err)
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	// COMMIT of a failed transaction answers ROLLBACK, not an error.
	if tag.String() != "COMMIT" {
		return fmt.Errorf("commit: transaction rolled back (%s)", tag)
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// rollback ends a transaction that did not commit. It runs even when the
// caller's context is done; when it fails, the pool drops the connection
// because it is still inside a transaction.
func rollback(conn *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = conn.Exec(ctx, "ROLLBACK")
}

// columns are a batch's events as the arrays insertEvents takes.
type columns struct {
	topic, id, source []string
	ts                []time.Time
	payload           [][]byte
}

// sortedColumns returns the events sorted by key as arrays, and the index in
// events of each key's first copy.
func sortedColumns(events []event.Event) (columns, map[event.Key]int) {
	idx := make([]int, len(events))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Or(cmp.Compare(events[a].Topic, events[b].Topic), cmp.Compare(events[a].EventID, events[b].EventID))
	})
	n := len(events)
	c := columns{
		topic: make([]string, n), id: make([]string, n), source: make([]string, n),
		ts: make([]time.Time, n), payload: make([][]byte, n),
	}
	first := make(map[event.Key]int, n)
	for j, i := range idx {
		e := &events[i]
		c.topic[j], c.id[j], c.source[j], c.ts[j] = e.Topic, e.EventID, e.Source, e.Timestamp
		c.payload[j] = e.Payload
		if c.payload[j] == nil {
			c.payload[j] = []byte(`{}`)
		}
		if _, seen := first[e.Key()]; !seen {
			first[e.Key()] = i
		}
	}
	return c, first
}

// Offsets returns the next offset to consume of each partition of topic.
func (s *Store) Offsets(ctx context.Context, topic string) (map[int]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT partition, next FROM offsets WHERE topic = $1`, topic)
	if err != nil {
		return nil, fmt.Errorf("read offsets: %w", err)
	}
	defer rows.Close()
	out := map[int]int64{}
	for rows.Next() {
		var p int
		var next int64
		if err := rows.Scan(&p, &next); err != nil {
			return nil, fmt.Errorf("read offsets: %w", err)
		}
		out[p] = next
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read offsets: %w", err)
	}
	return out, nil
}

// Events returns up to limit events after the position after, in commit
// order, optionally of one topic. A position is (commit pos, seq): commits
// become visible in pos order (see lockCommitOrder), so no row can later
// appear before a position already returned, and a stored row is served as
// soon as it is committed, whatever else runs in the cluster.
func (s *Store) Events(ctx context.Context, topic string, after event.Position, limit int) ([]event.Stored, error) {
	const q = `SELECT c.pos, e.seq, e.topic, e.event_id, e.ts, e.source, e.payload, e.processed_at
FROM event_commits c JOIN events e ON e.txid = c.txid
WHERE c.pos >= $1 AND (c.pos > $1 OR e.seq > $2)`
	var rows pgx.Rows
	var err error
	if topic == "" {
		rows, err = s.pool.Query(ctx, q+` ORDER BY c.pos, e.seq LIMIT $3`, after.Tx, after.Seq, limit)
	} else {
		rows, err = s.pool.Query(ctx, q+` AND e.topic = $4 ORDER BY c.pos, e.seq LIMIT $3`, after.Tx, after.Seq, limit, topic)
	}
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var out []event.Stored
	for rows.Next() {
		var e event.Stored
		var payload []byte
		if err := rows.Scan(&e.Pos.Tx, &e.Pos.Seq, &e.Topic, &e.EventID, &e.Timestamp, &e.Source, &payload, &e.ProcessedAt); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		// pgx gives timestamptz in the local zone; the API speaks UTC.
		e.Timestamp = e.Timestamp.UTC()
		e.ProcessedAt = e.ProcessedAt.UTC()
		e.Payload = payload
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return out, nil
}

// Counts returns the counters of every topic, summed over its partitions and
// sorted by topic, read in one statement so the totals are one snapshot.
func (s *Store) Counts(ctx context.Context) ([]event.Counts, error) {
	rows, err := s.pool.Query(ctx, `SELECT topic, sum(received)::bigint, sum(unique_processed)::bigint,
		sum(duplicate_dropped)::bigint FROM counters GROUP BY topic ORDER BY topic`)
	if err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	defer rows.Close()
	var out []event.Counts
	for rows.Next() {
		var c event.Counts
		if err := rows.Scan(&c.Topic, &c.Received, &c.Unique, &c.Duplicates); err != nil {
			return nil, fmt.Errorf("read counters: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	return out, nil
}

// Rows counts the stored events (for tests of the invariants).
func (s *Store) Rows(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}
