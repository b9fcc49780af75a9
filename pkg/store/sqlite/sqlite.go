// Package sqlite is the Store and Reader of the all-in-one mode: one SQLite
// file in WAL mode, one writer connection, a pool of readers.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store persists batches into SQLite and reads them back.
type Store struct {
	w, r *sql.DB
	ins  *sql.Stmt
}

// Open opens (creating when missing) the database at path and applies the
// migrations. synchronous=FULL makes a commit survive power loss, not only a
// process crash; group commit pays for it.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=busy_timeout(10000)&_pragma=foreign_keys(OFF)&_txlock=immediate" +
		// A large page cache and memory-mapped reads keep the unique index
		// of millions of events out of read syscalls.
		"&_pragma=cache_size(-262144)&_pragma=mmap_size(1073741824)&_pragma=temp_store(MEMORY)"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	// SQLite has one writer; more connections would only wait on its lock.
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	s := &Store{w: w}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite readers: %w", err)
	}
	r.SetMaxOpenConns(4)
	s.r = r
	s.ins, err = w.PrepareContext(ctx, `INSERT INTO events (topic, event_id, ts, source, payload, processed_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (topic, event_id) DO NOTHING`)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("prepare insert: %w", err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	p, err := goose.NewProvider(goose.DialectSQLite3, s.w, mustSub(migrations, "migrations"))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// Close closes both pools.
func (s *Store) Close() error {
	var errs []error
	if s.ins != nil {
		errs = append(errs, s.ins.Close())
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	return errors.Join(errs...)
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.r.PingContext(ctx) }

// Persist writes the batch's new rows, its counters and its offset in one
// transaction. The unique key on (topic, event_id) decides what is new.
func (s *Store) Persist(ctx context.Context, b *process.Batch) (process.Persisted, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return process.Persisted{}, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	out := process.Persisted{New: make([]bool, len(b.Events))}
	counts := make(map[string]*event.Counts)
	count := func(topic string) *event.Counts {
		c := counts[topic]
		if c == nil {
			c = &event.Counts{Topic: topic}
			counts[topic] = c
		}
		return c
	}
	for topic, n := range b.Dropped {
		c := count(topic)
		c.Received += int64(n)
		c.Duplicates += int64(n)
	}
	ins := tx.StmtContext(ctx, s.ins)
	now := time.Now().UnixMicro()
	for i := range b.Events {
		e := &b.Events[i]
		res, err := ins.ExecContext(ctx, e.Topic, e.EventID, e.Timestamp.UnixMicro(), e.Source, []byte(e.Payload), now)
		if err != nil {
			return process.Persisted{}, fmt.Errorf("insert event: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return process.Persisted{}, fmt.Errorf("insert event: %w", err)
		}
		c := count(e.Topic)
		c.Received++
		if n == 1 {
			out.New[i] = true
			c.Unique++
		} else {
			c.Duplicates++
		}
	}
	for _, c := range counts {
		if _, err := tx.ExecContext(ctx, `INSERT INTO counters (topic, shard, received, unique_processed, duplicate_dropped)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (topic, shard) DO UPDATE SET
			received = received + excluded.received,
			unique_processed = unique_processed + excluded.unique_processed,
			duplicate_dropped = duplicate_dropped + excluded.duplicate_dropped`,
			c.Topic, b.Shard, c.Received, c.Unique, c.Duplicates); err != nil {
			return process.Persisted{}, fmt.Errorf("update counters: %w", err)
		}
	}
	if o := b.Offset; o != nil {
		res, err := tx.ExecContext(ctx, `INSERT INTO offsets (topic, partition, next) VALUES (?, ?, ?)
			ON CONFLICT (topic, partition) DO UPDATE SET next = excluded.next WHERE offsets.next = ?`,
			o.Topic, o.Partition, o.Next, o.From)
		if err != nil {
			return process.Persisted{}, fmt.Errorf("record offset: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return process.Persisted{}, process.ErrFenced
		}
	}
	if err := tx.Commit(); err != nil {
		return process.Persisted{}, fmt.Errorf("commit: %w", err)
	}
	return out, nil
}

// Offsets returns the next offset to consume of each partition of topic.
func (s *Store) Offsets(ctx context.Context, topic string) (map[int]int64, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT partition, next FROM offsets WHERE topic = ?`, topic)
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
	return out, rows.Err()
}

// Events returns up to limit events after the position after, in
// processing order, optionally of one topic. With one writer, seq order is
// commit order: every position has Tx 0.
func (s *Store) Events(ctx context.Context, topic string, after event.Position, limit int) ([]event.Stored, error) {
	if after.Tx > 0 {
		return nil, nil // after every position this store holds
	}
	if after.Tx < 0 {
		after.Seq = math.MinInt64 // before every one
	}
	q := `SELECT seq, topic, event_id, ts, source, payload, processed_at FROM events WHERE seq > ?`
	args := []any{after.Seq}
	if topic != "" {
		q += ` AND topic = ?`
		args = append(args, topic)
	}
	q += ` ORDER BY seq LIMIT ?`
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var out []event.Stored
	for rows.Next() {
		var e event.Stored
		var ts, at int64
		var payload []byte
		if err := rows.Scan(&e.Pos.Seq, &e.Topic, &e.EventID, &ts, &e.Source, &payload, &at); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		e.Timestamp = time.UnixMicro(ts).UTC()
		e.ProcessedAt = time.UnixMicro(at).UTC()
		e.Payload = payload
		out = append(out, e)
	}
	return out, rows.Err()
}

// Counts returns the counters of every topic, sorted by topic, read in one
// statement so the totals are one consistent snapshot.
func (s *Store) Counts(ctx context.Context) ([]event.Counts, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT topic, SUM(received), SUM(unique_processed), SUM(duplicate_dropped)
		FROM counters GROUP BY topic ORDER BY topic`)
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
	return out, rows.Err()
}

// Rows counts the stored events (for tests of the invariants).
func (s *Store) Rows(ctx context.Context) (int64, error) {
	var n int64
	err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM events`).Scan(&n)
	return n, err
}
