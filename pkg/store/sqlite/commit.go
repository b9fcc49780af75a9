package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// commit is the group writer's Commit: one transaction for the group, then,
// under light load, a checkpoint (wal.go).
func (s *Store) commit(group []*process.Batch) ([]process.Persisted, error) {
	if s.beforeCommit != nil {
		s.beforeCommit()
	}
	outs, err := s.commitGroup(group)
	if err != nil {
		return nil, err
	}
	rows := 0
	for _, b := range group {
		rows += len(b.Events)
	}
	s.afterCommit(rows)
	return outs, nil
}

// shardTopic keys a counter row.
type shardTopic struct {
	topic string
	shard int
}

// commitGroup writes every batch of the group in one transaction. The
// transaction is not bound to any caller's context: once begun it finishes,
// so no caller hears "failed" of events that were stored.
func (s *Store) commitGroup(group []*process.Batch) ([]process.Persisted, error) {
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit

	ins := &inserter{one: tx.StmtContext(ctx, s.ins), many: tx.StmtContext(ctx, s.insMany), tx: tx,
		now: time.Now().UnixMicro()}
	counts := map[shardTopic]*event.Counts{}
	outs := make([]process.Persisted, len(group))
	for i, b := range group {
		batchCounts := map[string]*event.Counts{}
		count := func(topic string) *event.Counts {
			c := batchCounts[topic]
			if c == nil {
				c = &event.Counts{Topic: topic}
				batchCounts[topic] = c
			}
			return c
		}
		isNew := make([]bool, len(b.Events))
		var last int64
		checkKept := s.keysKept.Load() && len(b.Events) > 0
		if checkKept {
			if last, err = lastSeq(ctx, tx); err != nil {
				return nil, err
			}
		}
		if err := ins.insert(ctx, b.Events, isNew); err != nil {
			return nil, err
		}
		if checkKept {
			if err := dropLateCopies(ctx, tx, last, b.Events, isNew); err != nil {
				return nil, err
			}
		}
		for j := range b.Events {
			c := count(b.Events[j].Topic)
			c.Received++
			if isNew[j] {
				c.Unique++
			} else {
				c.Duplicates++
			}
		}
		for topic, n := range b.Dropped {
			c := count(topic)
			c.Received += int64(n)
			c.Duplicates += int64(n)
		}
		for topic, c := range batchCounts {
			k := shardTopic{topic, b.Shard}
			if total := counts[k]; total != nil {
				total.Received += c.Received
				total.Unique += c.Unique
				total.Duplicates += c.Duplicates
			} else {
				counts[k] = c
			}
		}
		outs[i] = process.Persisted{New: isNew}
	}
	for k, c := range counts {
		if _, err := tx.ExecContext(ctx, `INSERT INTO counters (topic, shard, received, unique_processed, duplicate_dropped)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT (topic, shard) DO UPDATE SET
			received = received + excluded.received,
			unique_processed = unique_processed + excluded.unique_processed,
			duplicate_dropped = duplicate_dropped + excluded.duplicate_dropped`,
			k.topic, k.shard, c.Received, c.Unique, c.Duplicates); err != nil {
			return nil, fmt.Errorf("update counters: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return outs, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// rowsPerInsert is how many events one multi-row INSERT carries: one
// statement per row costs more in database/sql than in SQLite itself.
const rowsPerInsert = 32

// insertMany is the multi-row INSERT of rowsPerInsert events. OR IGNORE,
// not ON CONFLICT DO NOTHING: a statement that can abort halfway (on a NOT
// NULL column) makes SQLite copy every page it touches to a statement
// journal first, and on random keys that is a page per event (docs/benchmarks.md,
// "Random ids, single events, open loop"). Nothing is NULL: Go strings and
// integers never are, and insert refuses a nil payload before any statement.
var insertMany = "INSERT OR IGNORE INTO events (topic, event_id, ts, source, payload, processed_at) VALUES " +
	strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", rowsPerInsert), ", ")

// inserter inserts a batch's events (distinct keys) and tells which were new.
type inserter struct {
	one, many *sql.Stmt
	tx        *sql.Tx
	now       int64
	args      []any
}

func (in *inserter) insert(ctx context.Context, events []event.Event, isNew []bool) error {
	for i := range events {
		// A nil payload binds as NULL, which OR IGNORE would skip unseen.
		if events[i].Payload == nil {
			return fmt.Errorf("insert event %q of topic %q: no payload", events[i].EventID, events[i].Topic)
		}
	}
	j := 0
	for ; j+rowsPerInsert <= len(events); j += rowsPerInsert {
		if err := in.chunk(ctx, events[j:j+rowsPerInsert], isNew[j:j+rowsPerInsert]); err != nil {
			return err
		}
	}
	for ; j < len(events); j++ {
		e := &events[j]
		res, err := in.one.ExecContext(ctx, e.Topic, e.EventID, e.Timestamp.UnixMicro(), e.Source, []byte(e.Payload), in.now)
		if err != nil {
			return fmt.Errorf("insert event: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("insert event: %w", err)
		}
		isNew[j] = n == 1
	}
	return nil
}

// chunk inserts rowsPerInsert events in one statement. Rows inserted by one
// statement get consecutive rowids ending at the last insert rowid (a new
// rowid is one past the largest, and retention never deletes the largest),
// so when only some were new, the new ones are read back by that rowid range.
func (in *inserter) chunk(ctx context.Context, events []event.Event, isNew []bool) error {
	in.args = in.args[:0]
	for i := range events {
		e := &events[i]
		in.args = append(in.args, e.Topic, e.EventID, e.Timestamp.UnixMicro(), e.Source, []byte(e.Payload), in.now)
	}
	res, err := in.many.ExecContext(ctx, in.args...)
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	switch {
	case n == int64(len(events)):
		for i := range isNew {
			isNew[i] = true
		}
		return nil
	case n == 0:
		return nil
	}
	last, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	rows, err := in.tx.QueryContext(ctx, `SELECT topic, event_id FROM events WHERE seq > ? AND seq <= ?`, last-n, last)
	if err != nil {
		return fmt.Errorf("read back new events: %w", err)
	}
	defer rows.Close()
	fresh := make(map[event.Key]bool, n)
	for rows.Next() {
		var k event.Key
		if err := rows.Scan(&k.Topic, &k.EventID); err != nil {
			return fmt.Errorf("read back new events: %w", err)
		}
		fresh[k] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read back new events: %w", err)
	}
	for i := range events {
		isNew[i] = fresh[events[i].Key()]
	}
	return nil
}
