package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// Retention deletes old events in short transactions of a bounded number of
// rows, oldest first along the (topic, seq) index. They share the one writer
// connection with the group commits, so a deletion batch and a Persist never
// interleave.
//
// The newest event of the store is never deleted: SQLite numbers a new row
// one past the largest rowid alive, and deleting the largest would hand its
// seq, a cursor clients may hold, to the next event.

// expireEvents deletes the expired rows among the first ?2 of topic ?1.
const expireEvents = `DELETE FROM events WHERE seq IN (
	SELECT seq FROM (SELECT seq, processed_at FROM events WHERE topic = ?1 ORDER BY seq LIMIT ?2)
	WHERE processed_at < ?3 AND seq < (SELECT MAX(seq) FROM events))
RETURNING event_id, processed_at`

// Expire deletes up to limit events of topic stored before cutoff, oldest
// first, in one transaction, and returns how many it deleted. keepKeys keeps
// their keys for the dedup window.
func (s *Store) Expire(ctx context.Context, topic string, cutoff time.Time, keepKeys bool, limit int) (int, error) {
	if keepKeys {
		// Before any key is kept: from now on every group commit checks
		// its new rows against them.
		s.keysKept.Store(true)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("expire events: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	rows, err := tx.QueryContext(ctx, expireEvents, topic, limit, cutoff.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("expire events: %w", err)
	}
	type gone struct {
		id string
		at int64
	}
	var deleted []gone
	for rows.Next() {
		var g gone
		if err := rows.Scan(&g.id, &g.at); err != nil {
			rows.Close()
			return 0, fmt.Errorf("expire events: %w", err)
		}
		deleted = append(deleted, g)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, fmt.Errorf("expire events: %w", err)
	}
	if len(deleted) == 0 {
		return 0, nil
	}
	if keepKeys {
		for _, g := range deleted {
			if _, err := tx.ExecContext(ctx, `INSERT INTO expired_keys (topic, event_id, processed_at) VALUES (?, ?, ?)
				ON CONFLICT (topic, event_id) DO UPDATE SET processed_at = excluded.processed_at`, topic, g.id, g.at); err != nil {
				return 0, fmt.Errorf("expire events: keep key: %w", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO deleted_events (topic, events) VALUES (?, ?)
		ON CONFLICT (topic) DO UPDATE SET events = events + excluded.events`, topic, len(deleted)); err != nil {
		return 0, fmt.Errorf("expire events: count: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("expire events: commit: %w", err)
	}
	return len(deleted), nil
}

// Forget deletes up to limit keys of deleted events stored before cutoff
// (the dedup window is over for them) and returns how many.
func (s *Store) Forget(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM expired_keys WHERE (topic, event_id) IN (
		SELECT topic, event_id FROM expired_keys WHERE processed_at < ? ORDER BY processed_at LIMIT ?)`,
		cutoff.UnixMicro(), limit)
	if err != nil {
		return 0, fmt.Errorf("forget keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("forget keys: %w", err)
	}
	return int(n), nil
}

// Deleted returns how many events retention has deleted, in all topics.
func (s *Store) Deleted(ctx context.Context) (int64, error) {
	var n int64
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(SUM(events), 0) FROM deleted_events`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count deleted events: %w", err)
	}
	return n, nil
}

// Size returns the events alive (counted, not scanned: unique_processed
// minus deleted) and the bytes of the database and its write-ahead log.
func (s *Store) Size(ctx context.Context) (events, bytes int64, err error) {
	err = s.r.QueryRowContext(ctx, `SELECT
		(SELECT COALESCE(SUM(unique_processed), 0) FROM counters) -
		(SELECT COALESCE(SUM(events), 0) FROM deleted_events)`).Scan(&events)
	if err != nil {
		return 0, 0, fmt.Errorf("store size: %w", err)
	}
	for _, p := range []string{s.path, s.path + "-wal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("store size: %w", err)
		}
		bytes += fi.Size()
	}
	return events, bytes, nil
}

// dropLateCopies deletes the rows inserted after seq whose key is remembered
// from a deleted event, and marks those events of the batch as not new: late
// copies are duplicates.
func dropLateCopies(ctx context.Context, tx querier, after int64, events []event.Event, isNew []bool) error {
	rows, err := tx.QueryContext(ctx, `DELETE FROM events WHERE seq > ? AND EXISTS (
		SELECT 1 FROM expired_keys k WHERE k.topic = events.topic AND k.event_id = events.event_id)
		RETURNING topic, event_id`, after)
	if err != nil {
		return fmt.Errorf("drop late copies: %w", err)
	}
	defer rows.Close()
	late := map[event.Key]bool{}
	for rows.Next() {
		var k event.Key
		if err := rows.Scan(&k.Topic, &k.EventID); err != nil {
			return fmt.Errorf("drop late copies: %w", err)
		}
		late[k] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("drop late copies: %w", err)
	}
	for i := range events {
		if late[events[i].Key()] {
			isNew[i] = false
		}
	}
	return nil
}

// lastSeq is the largest seq stored, 0 in an empty store.
func lastSeq(ctx context.Context, tx querier) (int64, error) {
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM events`).Scan(&n); err != nil {
		return 0, fmt.Errorf("read last seq: %w", err)
	}
	return n, nil
}

// keysKeptAtOpen tells whether a previous run kept keys of deleted events.
func keysKeptAtOpen(ctx context.Context, db querier) (bool, error) {
	var kept bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM expired_keys)`).Scan(&kept); err != nil {
		return false, fmt.Errorf("read kept keys: %w", err)
	}
	return kept, nil
}
