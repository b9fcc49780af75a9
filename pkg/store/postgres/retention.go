package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// Retention deletes old events in short transactions of a bounded number of
// rows, oldest first along the (topic, txid, seq) index GET /events already
// keeps: no index is added to the write path. A batch takes the rows at the
// head of the topic and deletes those stored before the cutoff, so a row is
// never deleted early; one slightly out of order waits for the next round.
//
// Persist never waits on retention except for a key being deleted at that
// instant, and then for one short transaction. A copy inserted while its
// key moves to expired_keys is caught by expiredCopies, which runs after the
// insert in the same transaction and so sees a deletion the insert waited
// for (docs/retention.md, "Exactly once with deletion").

// lockRetention makes the processes that run retention take turns; the key
// is this feature's own.
const lockRetention = `SELECT pg_try_advisory_xact_lock(7305508455932928002)`

const expireEvents = `WITH gone AS (
	DELETE FROM events e WHERE e.seq IN (
		SELECT h.seq FROM (
			SELECT seq, processed_at FROM events WHERE topic = $1 ORDER BY txid, seq LIMIT $3
		) h WHERE h.processed_at < $2)
	RETURNING e.topic, e.event_id, e.processed_at, e.txid
), kept AS (
	INSERT INTO expired_keys (topic, event_id, processed_at)
	SELECT topic, event_id, processed_at FROM gone WHERE $4
	ON CONFLICT (topic, event_id) DO UPDATE SET processed_at = excluded.processed_at
), counted AS (
	INSERT INTO deleted_events AS d (topic, events)
	SELECT $1, count(*) FROM gone HAVING count(*) > 0
	ON CONFLICT (topic) DO UPDATE SET events = d.events + excluded.events
)
SELECT count(*), coalesce(array_agg(DISTINCT txid::text), '{}') FROM gone`

// A commit whose rows are all gone leaves GET /events nothing to join: its
// row goes too. A separate statement, as the CTE above still sees the rows
// it deletes.
const dropEmptyCommits = `DELETE FROM event_commits c
WHERE c.txid = ANY($1::text[]::xid8[]) AND NOT EXISTS (SELECT 1 FROM events e WHERE e.txid = c.txid)`

// expiredCopies deletes the rows this transaction inserted whose key is
// still remembered from a deleted event: they are late copies, duplicates.
// It starts from the batch's keys ($1, $2), so its cost is one probe of
// expired_keys per event, however many keys are kept.
const expiredCopies = `DELETE FROM events e
USING unnest($1::text[], $2::text[]) AS u (topic, event_id), expired_keys k
WHERE k.topic = u.topic AND k.event_id = u.event_id
	AND e.topic = u.topic AND e.event_id = u.event_id AND e.txid = pg_current_xact_id()
RETURNING e.topic, e.event_id`

// Expire deletes up to limit events of topic stored before cutoff, oldest
// first, in one transaction, and returns how many it deleted. keepKeys keeps
// their keys for the dedup window. It returns 0 while another process runs
// retention.
func (s *Store) Expire(ctx context.Context, topic string, cutoff time.Time, keepKeys bool, limit int) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("expire events: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	var mine bool
	if err := tx.QueryRow(ctx, lockRetention).Scan(&mine); err != nil {
		return 0, fmt.Errorf("expire events: %w", err)
	}
	if !mine {
		return 0, nil
	}
	var n int
	var txids []string
	if err := tx.QueryRow(ctx, expireEvents, topic, cutoff, limit, keepKeys).Scan(&n, &txids); err != nil {
		return 0, fmt.Errorf("expire events: %w", err)
	}
	if len(txids) > 0 {
		if _, err := tx.Exec(ctx, dropEmptyCommits, txids); err != nil {
			return 0, fmt.Errorf("expire events: drop empty commits: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("expire events: commit: %w", err)
	}
	return n, nil
}

// Forget deletes up to limit keys of deleted events stored before cutoff
// (the dedup window is over for them) and returns how many.
func (s *Store) Forget(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM expired_keys WHERE (topic, event_id) IN (
		SELECT topic, event_id FROM expired_keys WHERE processed_at < $1 ORDER BY processed_at LIMIT $2)`, cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("forget keys: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Deleted returns how many events retention has deleted, in all topics.
func (s *Store) Deleted(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(sum(events), 0)::bigint FROM deleted_events`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count deleted events: %w", err)
	}
	return n, nil
}

// Size returns the events alive (counted, not scanned: unique_processed
// minus deleted) and the bytes of the database on disk.
func (s *Store) Size(ctx context.Context) (events, bytes int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT
		(SELECT coalesce(sum(unique_processed), 0)::bigint FROM counters) -
		(SELECT coalesce(sum(events), 0)::bigint FROM deleted_events),
		pg_database_size(current_database())`).Scan(&events, &bytes)
	if err != nil {
		return 0, 0, fmt.Errorf("store size: %w", err)
	}
	return events, bytes, nil
}

// dropExpiredCopies reads the answer of expiredCopies and marks those
// events as not new.
func dropExpiredCopies(rows pgx.Rows, first map[event.Key]int, isNew []bool) error {
	var k event.Key
	for rows.Next() {
		if err := rows.Scan(&k.Topic, &k.EventID); err != nil {
			rows.Close()
			return fmt.Errorf("drop late copies: %w", err)
		}
		if i, ok := first[k]; ok {
			isNew[i] = false
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("drop late copies: %w", err)
	}
	return nil
}
