package pebble

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"
)

// Retention deletes old events in small synced batches, under the same lock
// as the group commits, so a deletion and a Persist never interleave. The
// key of a deleted event stays in the dedup index, marked deleted, while
// keepKeys: a late copy still finds it and counts as a duplicate.

// Expire deletes the expired events among the first limit events of topic,
// oldest first, and returns how many it deleted.
func (s *Store) Expire(ctx context.Context, topic string, cutoff time.Time, keepKeys bool, limit int) (int, error) {
	if limit <= 0 {
		return 0, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	wb := s.db.NewBatch()
	defer wb.Close()
	deleted, keysDeleted := 0, 0
	limitCutoff := cutoff.UnixMicro()
	n := 0
	var key []byte
	err := s.buckets.walkTopic(s.db, topic, 0, func(seq uint64) (bool, error) {
		n++
		key = eventKey(key[:0], seq)
		v, closer, err := s.db.Get(key)
		if err != nil {
			return false, fmt.Errorf("read %d: %w", seq, err)
		}
		e, err := parseEvent(seq, v)
		closer.Close()
		if err != nil {
			return false, err
		}
		at := e.ProcessedAt.UnixMicro()
		if at >= limitCutoff {
			return n < limit, nil
		}
		dk := s.buckets.dedupKey(nil, s.layout.dedupKey(nil, e.Topic, e.EventID), s.buckets.of(seq))
		if keepKeys {
			// The kept entry holds the seq: with buckets, it says which
			// one holds the dedup key.
			err = errors.Join(wb.Set(dk, dedupValue(nil, 0), nil), wb.Set(keptKey(at, e.Topic, e.EventID), appendSeq(nil, seq), nil))
		} else {
			err = wb.Delete(dk, nil)
			keysDeleted++
		}
		err = errors.Join(err, wb.Delete(key, nil), wb.Delete(s.buckets.topicKey(nil, topic, seq), nil))
		deleted++
		return n < limit, err
	})
	if err != nil {
		return 0, fmt.Errorf("expire events: %w", err)
	}
	if deleted == 0 {
		return 0, ctx.Err()
	}
	c := counters{}
	if old := s.counters[topic]; old != nil {
		c = *old
	}
	c.Topic = topic
	c.deleted += int64(deleted)
	if err := wb.Set(counterKey(topic), c.value(), nil); err != nil {
		return 0, fmt.Errorf("expire events: %w", err)
	}
	if err := wb.Commit(pebbledb.Sync); err != nil {
		return 0, fmt.Errorf("expire events: commit: %w", err)
	}
	s.counters[topic] = &c
	s.filter.deleted(keysDeleted)
	return deleted, nil
}

// Forget deletes up to limit kept keys of events stored before cutoff (the
// dedup window is over for them) and returns how many.
func (s *Store) Forget(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	upper := appendSeq([]byte{prefixKept}, uint64(max(cutoff.UnixMicro(), 0)))
	it, err := s.db.NewIter(&pebbledb.IterOptions{LowerBound: []byte{prefixKept}, UpperBound: upper})
	if err != nil {
		return 0, fmt.Errorf("forget keys: %w", err)
	}
	defer it.Close()
	wb := s.db.NewBatch()
	defer wb.Close()
	n, keysDeleted := 0, 0
	for it.First(); it.Valid() && n < limit; it.Next() {
		r := reader{b: it.Key()[9:]}
		topic := r.string()
		if r.err != nil {
			return 0, fmt.Errorf("forget keys: %w", r.err)
		}
		dk := s.layout.dedupKey(nil, topic, string(r.b))
		if s.buckets != 0 {
			if len(it.Value()) != 8 {
				return 0, fmt.Errorf("forget keys: kept key %q: %w", it.Key(), errCorrupt)
			}
			dk = s.buckets.dedupKey(nil, dk, s.buckets.of(beUint64(it.Value())))
		}
		// The dedup key is removed only while it is still the kept one.
		v, closer, err := s.db.Get(dk)
		switch {
		case err == nil:
			seq, perr := parseDedupValue(v)
			closer.Close()
			if perr != nil {
				return 0, fmt.Errorf("forget keys: %w", perr)
			}
			if seq == 0 {
				err = wb.Delete(dk, nil)
				keysDeleted++
			}
		case errors.Is(err, pebbledb.ErrNotFound):
			err = nil
		}
		if err = errors.Join(err, wb.Delete(it.Key(), nil)); err != nil {
			return 0, fmt.Errorf("forget keys: %w", err)
		}
		n++
	}
	if err := it.Error(); err != nil {
		return 0, fmt.Errorf("forget keys: %w", err)
	}
	if n == 0 {
		return 0, ctx.Err()
	}
	if err := wb.Commit(pebbledb.Sync); err != nil {
		return 0, fmt.Errorf("forget keys: commit: %w", err)
	}
	s.filter.deleted(keysDeleted)
	return n, nil
}

func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func nowMicro() int64 { return time.Now().UnixMicro() }
