package pebble

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
)

// The dedup index in memory, as a Bloom filter: most keys a group looks up
// are new, and the filter says so for most of them (all but about 1%)
// without the LSM, whose lookup checks a table's filter on every level it
// has, more of them the larger the store. A "maybe" is answered by the LSM,
// so the filter decides nothing on its own: it may hold keys the store does
// not (deleted ones, those of a failed commit), never the other way round.
//
// The filter is built in the background from the stored keys: at Open, and
// again, sized for the store then, once it holds twice the keys it was sized
// for (the store grew, or retention replaced its keys). Until a build ends
// the store looks up every key in the LSM as before, so a restart does not
// wait for it.

// filterFalsePositives is the share of new keys the filter sends to the LSM
// when full; it costs 9.6 bits a key.
const filterFalsePositives = 0.01

// DefaultFilterKeys is the fewest keys a filter is sized for.
const DefaultFilterKeys = 1 << 20

// keyFilter is the Store's filter and its next build; the writer's lock
// (Store.mu) guards it.
type keyFilter struct {
	cur      *bloom.BloomFilter // nil until the first build ends
	keys     uint               // added to cur
	capacity uint               // keys cur was sized for
	next     *nextFilter        // being built, or nil
	minKeys  uint
}

// nextFilter is a filter being built: the builder adds the keys it scans,
// the writer those it commits meanwhile.
type nextFilter struct {
	mu       sync.Mutex
	f        *bloom.BloomFilter
	keys     uint
	capacity uint
}

func (nf *nextFilter) add(keys [][]byte) {
	nf.mu.Lock()
	defer nf.mu.Unlock()
	for _, k := range keys {
		nf.f.Add(k)
	}
	nf.keys += uint(len(keys))
}

// mayHold is false when key is certainly not stored.
func (f *keyFilter) mayHold(key []byte) bool { return f.cur == nil || f.cur.Test(key) }

// add records keys about to be committed.
func (f *keyFilter) add(keys [][]byte) {
	if f.cur != nil {
		for _, k := range keys {
			f.cur.Add(k)
		}
		f.keys += uint(len(keys))
	}
	if f.next != nil {
		f.next.add(keys)
	}
}

// outgrown says a build should start: there is no filter yet, or it holds
// more keys than it was sized for.
func (f *keyFilter) outgrown() bool {
	return f.next == nil && (f.cur == nil || f.keys > f.capacity)
}

// startBuild sizes the next filter for twice the keys the store holds.
func (f *keyFilter) startBuild(stored uint) *nextFilter {
	capacity := max(2*stored, f.minKeys)
	f.next = &nextFilter{f: bloom.NewWithEstimates(capacity, filterFalsePositives), capacity: capacity}
	return f.next
}

// finish makes a complete build the filter.
func (f *keyFilter) finish(nf *nextFilter) {
	f.cur, f.keys, f.capacity, f.next = nf.f, nf.keys, nf.capacity, nil
}

// buildFilter starts a build when the filter is missing or outgrown; s.mu is
// held. The build's scan starts after the writer adds to it, so every key
// is in one or the other.
func (s *Store) buildFilter() {
	if !s.filter.outgrown() {
		return
	}
	var stored uint
	for _, c := range s.counters {
		stored += uint(c.Unique)
	}
	nf := s.filter.startBuild(stored)
	s.builds.Go(func() {
		t0 := time.Now()
		err := s.scanKeys(s.buildCtx, nf)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			// The next filter stays unfinished, so no build starts
			// again: the store goes on with the filter it has, or
			// with the LSM alone.
			if !errors.Is(err, context.Canceled) {
				s.log.Error("dedup filter not built: lookups go to the LSM", "err", err)
			}
			return
		}
		s.filter.finish(nf)
		s.log.Debug("dedup filter built", "keys", nf.keys, "capacity", nf.capacity,
			"bytes", nf.f.Cap()/8, "took", time.Since(t0))
	})
}

// scanKeys adds every stored dedup key to nf, a chunk at a time.
func (s *Store) scanKeys(ctx context.Context, nf *nextFilter) error {
	it, err := s.db.NewIter(prefixBounds([]byte{prefixKey}))
	if err != nil {
		return fmt.Errorf("scan dedup keys: %w", err)
	}
	defer it.Close()
	const chunk = 4096
	var buf []byte
	keys := make([][]byte, 0, chunk)
	flush := func() error {
		nf.add(keys)
		keys, buf = keys[:0], buf[:0]
		return ctx.Err()
	}
	for it.First(); it.Valid(); it.Next() {
		start := len(buf)
		buf = append(buf, it.Key()...)
		keys = append(keys, buf[start:len(buf):len(buf)])
		if len(keys) == chunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := errors.Join(it.Error(), flush()); err != nil {
		return fmt.Errorf("scan dedup keys: %w", err)
	}
	return nil
}
