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
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/store/groupcommit"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store persists batches into SQLite and reads them back. One goroutine
// writes: concurrent Persist calls queue up and each transaction commits all
// that waited (group commit), so the single writer pays one commit for many
// callers.
type Store struct {
	w, r    *sql.DB
	ins     *sql.Stmt // one event
	insMany *sql.Stmt // rowsPerInsert events

	group     *groupcommit.Writer
	closeOnce sync.Once
	path      string
	// keysKept is set once retention has kept a key of a deleted event:
	// group commits then check their new rows against the kept keys.
	keysKept atomic.Bool
	// beforeCommit, when set by a test, runs before each group's transaction.
	beforeCommit func()
	// Checkpoints under light load (wal.go), and how many ran, for tests.
	light           lightLoad
	idleCheckpoints atomic.Int64
}

// Option configures a Store.
type Option func(*options)

type options struct {
	sync       string
	cacheBytes int64 // page cache of the writer connection
	mmapBytes  int64 // memory-mapped reads per connection; 0 is off
	// checkpointPages is the writer's wal_autocheckpoint (wal.go).
	checkpointPages int
}

// Defaults of the memory settings: together 48 MiB of page cache,
// so the all-in-one fits a small VM at any store size. Larger caches buy
// speed on big stores (docs/benchmarks.md measures by how much).
const (
	DefaultCacheBytes = 48 << 20
	readerCacheBytes  = 4 << 20 // per reader: pages of /events and /stats
	readerConns       = 4
	DefaultMmapBytes  = 0
	kibibyte          = 1 << 10
)

// WithSync sets SQLite's synchronous mode: "normal" (the default) makes a
// commit survive any crash of the process, as the WAL is written before the
// commit returns; "full" also fsyncs it, to survive power loss, at the
// price of one disk flush per group commit.
func WithSync(mode string) Option { return func(o *options) { o.sync = mode } }

// WithCache sets the page cache of the writer connection, in bytes: the
// unique index of random keys is what it holds, and the pages it misses are
// read from the operating system's cache, not from disk.
func WithCache(bytes int64) Option { return func(o *options) { o.cacheBytes = bytes } }

// WithMmap sets how much of the file each connection may map into memory
// for reads. Mapped pages count as the process's resident memory, so it is
// off by default.
func WithMmap(bytes int64) Option { return func(o *options) { o.mmapBytes = bytes } }

// Open opens (creating when missing) the database at path and applies the
// migrations.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := options{sync: "normal", cacheBytes: DefaultCacheBytes, mmapBytes: DefaultMmapBytes,
		checkpointPages: DefaultCheckpointPages}
	for _, opt := range opts {
		opt(&o)
	}
	if o.sync != "normal" && o.sync != "full" {
		return nil, fmt.Errorf("sqlite synchronous mode %q: want normal or full", o.sync)
	}
	if o.checkpointPages < 1 {
		return nil, fmt.Errorf("sqlite checkpoint pages %d: want >= 1", o.checkpointPages)
	}
	if o.cacheBytes < 0 || o.mmapBytes < 0 {
		return nil, fmt.Errorf("sqlite cache %d and mmap %d bytes: want >= 0", o.cacheBytes, o.mmapBytes)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(" + o.sync + ")" +
		"&_pragma=busy_timeout(10000)&_pragma=foreign_keys(OFF)&_txlock=immediate" +
		fmt.Sprintf("&_pragma=mmap_size(%d)&_pragma=temp_store(MEMORY)", o.mmapBytes)
	// A negative cache_size is in KiB.
	w, err := sql.Open("sqlite", dsn+fmt.Sprintf("&_pragma=cache_size(-%d)&_pragma=wal_autocheckpoint(%d)",
		o.cacheBytes/kibibyte, o.checkpointPages))
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	// SQLite has one writer; more connections would only wait on its lock.
	w.SetMaxOpenConns(1)
	w.SetConnMaxIdleTime(0)
	s := &Store{w: w, path: path}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	kept, err := keysKeptAtOpen(ctx, w)
	if err != nil {
		w.Close()
		return nil, err
	}
	s.keysKept.Store(kept)
	r, err := sql.Open("sqlite", dsn+fmt.Sprintf("&_pragma=query_only(1)&_pragma=cache_size(-%d)", readerCacheBytes/kibibyte))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite readers: %w", err)
	}
	r.SetMaxOpenConns(readerConns)
	s.r = r
	s.ins, err = w.PrepareContext(ctx, `INSERT OR IGNORE INTO events (topic, event_id, ts, source, payload, processed_at)
		VALUES (?, ?, ?, ?, ?, ?)`) // OR IGNORE: see insertMany
	if err == nil {
		s.insMany, err = w.PrepareContext(ctx, insertMany)
	}
	if err != nil {
		s.r.Close()
		w.Close()
		return nil, fmt.Errorf("prepare insert: %w", err)
	}
	s.group = groupcommit.New(s.commit)
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

// Close commits the batches already queued, then closes both pools.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.group.Close()
		err = errors.Join(s.ins.Close(), s.insMany.Close(), s.r.Close(), s.w.Close())
	})
	return err
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.r.PingContext(ctx) }

// ErrClosed is returned by Persist after Close.
var ErrClosed = groupcommit.ErrClosed

// ErrOffset is returned by Persist for a batch that carries a Kafka offset.
var ErrOffset = groupcommit.ErrOffset

// Persist writes the batch's new rows and its counters in one transaction,
// shared with the batches queued at the same time. The unique key on
// (topic, event_id) decides what is new. A batch with an Offset is refused
// with ErrOffset before it is queued.
func (s *Store) Persist(ctx context.Context, b *process.Batch) (process.Persisted, error) {
	return s.group.Persist(ctx, b)
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
