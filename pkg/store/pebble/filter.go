package pebble

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/bits-and-blooms/bloom/v3"
	pebbledb "github.com/cockroachdb/pebble/v2"
)

// The dedup index in memory, as a Bloom filter: most keys a group looks up
// are new, and the filter says so for most of them (all but about 1%)
// without the LSM, whose lookup checks a table's filter on every level it
// has, more of them the larger the store. A "maybe" is answered by the LSM,
// so the filter decides nothing on its own: it may hold keys the store does
// not (deleted ones, those of a failed commit), never the other way round.
//
// The filter is built in the background from the stored keys: at Open, and
// again once it is full, sized then for twice the keys stored, within its
// memory bound. A full filter at that bound is rebuilt only when retention
// has deleted half its keys; otherwise it fills further, and rules out fewer
// new keys (84% at twice its keys, 32% at four times). Until a build ends
// the store looks up every key in the LSM, so a restart does not wait for it.

// filterFalsePositives is the share of new keys a full filter sends to the
// LSM; it costs 9.6 bits a key.
const filterFalsePositives = 0.01

// Defaults of the filter's size: the fewest keys it is sized for, and the
// most memory it takes (28 M keys at 1%; sized for twice the keys stored,
// it reaches that at 14 M).
const (
	DefaultFilterKeys  = 1 << 20
	DefaultFilterBytes = 32 << 20
)

// filterKeys is how many keys a filter of that many bytes holds.
func filterKeys(bytes int64) uint {
	bitsPerKey := -math.Log(filterFalsePositives) / (math.Ln2 * math.Ln2)
	return uint(float64(8*bytes) / bitsPerKey)
}

// keyFilter is the Store's filter and its next build; the writer's lock
// (Store.mu) guards it.
type keyFilter struct {
	cur      *bloom.BloomFilter // nil until the first build ends
	freeCur  func()
	keys     uint        // added to cur
	gone     uint        // dedup keys deleted since cur was built
	capacity uint        // keys cur was sized for
	next     *nextFilter // being built, or nil
	minKeys  uint
	maxKeys  uint // 0: no filter
}

// nextFilter is a filter being built: the builder adds the keys it scans,
// the writer those it commits meanwhile.
type nextFilter struct {
	mu       sync.Mutex
	f        *bloom.BloomFilter
	free     func()
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

// deleted records dedup keys deleted (by retention): they stay in the
// filter, and count towards a rebuild.
func (f *keyFilter) deleted(n int) { f.gone += uint(n) }

// wantBuild says a build should start: there is no filter yet, or it is
// full and a new one would be larger, or would hold half the keys or fewer.
func (f *keyFilter) wantBuild() bool {
	switch {
	case f.maxKeys == 0 || f.next != nil:
		return false
	case f.cur == nil:
		return true
	case f.keys <= f.capacity:
		return false
	}
	return f.capacity < f.maxKeys || 2*(f.keys-min(f.gone, f.keys)) <= f.capacity
}

// startBuild sizes the next filter for twice the keys stored. Its bits are
// outside the Go heap (allocBits): the garbage collector would let the heap
// grow by as much again as the filter.
func (f *keyFilter) startBuild(stored uint) (*nextFilter, error) {
	capacity := min(max(2*stored, f.minKeys), f.maxKeys)
	m, k := bloom.EstimateParameters(capacity, filterFalsePositives)
	bits, free, err := allocBits((m + 63) / 64)
	if err != nil {
		return nil, fmt.Errorf("dedup filter of %d bits: %w", m, err)
	}
	f.next = &nextFilter{f: bloom.FromWithM(bits, m, k), free: free, capacity: capacity}
	return f.next, nil
}

// finish makes a complete build the filter, and frees the one it replaces.
func (f *keyFilter) finish(nf *nextFilter) {
	if f.cur != nil {
		f.freeCur()
	}
	f.cur, f.freeCur, f.keys, f.gone, f.capacity, f.next = nf.f, nf.free, nf.keys, 0, nf.capacity, nil
}

// release frees the filter and an unfinished build (Close; the builder has
// stopped).
func (f *keyFilter) release() {
	if f.cur != nil {
		f.freeCur()
	}
	if f.next != nil {
		f.next.free()
	}
	f.cur, f.next = nil, nil
}

// buildFilter starts a build when the filter is missing or outgrown; s.mu is
// held. The build's scan starts after the writer adds to it, so every key
// is in one or the other.
func (s *Store) buildFilter() {
	if !s.filter.wantBuild() {
		return
	}
	// The keys stored: counted by the filter, or, before the first one,
	// bounded by the events ever stored.
	stored := s.filter.keys - min(s.filter.gone, s.filter.keys)
	if s.filter.cur == nil {
		for _, c := range s.counters {
			stored += uint(c.Unique)
		}
	}
	nf, err := s.filter.startBuild(stored)
	if err != nil {
		s.log.Error("no dedup filter: lookups go to the LSM", "err", err)
		s.filter.maxKeys = 0
		return
	}
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

// scanKeys adds every stored dedup key to nf, a chunk at a time, each from
// an iterator of its own: an iterator keeps every memtable that existed at
// its creation in memory until it closes, and a scan of millions of keys
// outlasts several.
func (s *Store) scanKeys(ctx context.Context, nf *nextFilter) error {
	from, end := []byte{prefixKey}, []byte{prefixKey + 1}
	for from != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		var keys [][]byte
		var err error
		if keys, from, err = s.scanChunk(from, end); err != nil {
			return err
		}
		nf.add(keys)
	}
	return nil
}

// scanChunk returns up to 4096 keys from the first at or after from, and the
// key after them (nil at end).
func (s *Store) scanChunk(from, end []byte) (keys [][]byte, next []byte, err error) {
	it, err := s.db.NewIter(&pebbledb.IterOptions{LowerBound: from, UpperBound: end})
	if err != nil {
		return nil, nil, fmt.Errorf("scan dedup keys: %w", err)
	}
	var buf []byte
	for it.First(); it.Valid(); it.Next() {
		if len(keys) == 4096 {
			next = bytes.Clone(it.Key())
			break
		}
		start := len(buf)
		buf = append(buf, it.Key()...)
		keys = append(keys, buf[start:len(buf):len(buf)])
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, nil, fmt.Errorf("scan dedup keys: %w", err)
	}
	return keys, next, nil
}
