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
// again once it is full, sized then for twice the keys stored, or, past half
// its memory bound, for the bound. A full filter at that bound is rebuilt
// only when retention has deleted half its keys; otherwise it fills further,
// and rules out fewer new keys (84% at twice its keys, 32% at four times).
// While a build runs the filter before it answers, over its size but still
// holding every key (the writer adds to both), so the LSM does not take
// every lookup for the seconds a scan of millions of keys lasts; the two are
// held together until the build ends. Without one before it (the build at
// Open, a rebuild at the bound), every key goes to the LSM until the build
// ends, as before there was a filter, and a restart does not wait for it.

// filterFalsePositives is the share of new keys a full filter sends to the
// LSM; it costs 9.6 bits a key.
const filterFalsePositives = 0.01

// Defaults of the filter's size: the fewest keys it is sized for, and the
// most memory it takes (14 M keys at 1%; sized for twice the keys stored
// until that is over half of it, it is sized for all of it at the first
// growth past 3.5 M stored).
const (
	DefaultFilterKeys  = 1 << 20
	DefaultFilterBytes = 16 << 20
)

// filterKeys is how many keys a filter of that many bytes holds.
func filterKeys(bytes int64) uint {
	bitsPerKey := -math.Log(filterFalsePositives) / (math.Ln2 * math.Ln2)
	return uint(float64(8*bytes) / bitsPerKey)
}

// keyFilter is the Store's filter. The writer's lock (Store.mu) guards it,
// but for f's bits and keys while a build adds to them too (mu).
type keyFilter struct {
	f        *bloom.BloomFilter // nil when there is none
	free     func()             // unmaps f's bits
	ready    bool               // f holds every stored key: its build has ended
	building bool
	prev     *bloom.BloomFilter // while f is built: the filter before it, complete
	freePrev func()
	mu       sync.Mutex
	keys     uint // added to f (a key committed during a build may count twice)
	gone     uint // dedup keys deleted since f was built
	capacity uint // keys f was sized for
	minKeys  uint
	maxKeys  uint // 0: no filter
}

// mayHold is false when key is certainly not stored.
func (f *keyFilter) mayHold(key []byte) bool {
	switch {
	case f.ready:
		return f.f.Test(key)
	case f.prev != nil:
		return f.prev.Test(key)
	}
	return true
}

// add records the writer's keys, before their commit: in f, and in prev
// while f is built.
func (f *keyFilter) add(keys [][]byte) {
	if f.prev != nil {
		for _, k := range keys {
			f.prev.Add(k)
		}
	}
	f.addToNew(keys)
}

// addToNew records keys in f alone: a build's, from its scan, or the
// writer's.
func (f *keyFilter) addToNew(keys [][]byte) {
	if f.f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		f.f.Add(k)
	}
	f.keys += uint(len(keys))
}

// deleted records dedup keys deleted (by retention): they stay in the
// filter, and count towards a rebuild.
func (f *keyFilter) deleted(n int) { f.gone += uint(n) }

// wantBuild says a build should start: there is no filter yet, or it is
// full and a new one would be larger, or would hold half the keys or fewer.
func (f *keyFilter) wantBuild() bool {
	switch {
	case f.maxKeys == 0 || f.building:
		return false
	case f.f == nil:
		return true
	case f.keys <= f.capacity:
		return false
	}
	return f.capacity < f.maxKeys || 2*(f.keys-min(f.gone, f.keys)) <= f.capacity
}

// startBuild makes an empty filter, sized for twice the keys stored (or
// the bound), and keeps the one before as prev or frees it. Its bits are
// outside the Go heap (allocBits): the garbage collector would let the
// heap grow by as much again as the filter.
func (f *keyFilter) startBuild(stored uint) error {
	// A build starts when none runs: f is complete, or there is none yet.
	// It answers while its successor is built, unless it is at the bound
	// (rebuilt after retention deleted keys): the two stay within one and
	// a half times the bound.
	if f.f != nil && f.capacity <= f.maxKeys/2 {
		f.prev, f.freePrev = f.f, f.free
	} else if f.f != nil {
		f.free()
	}
	f.f, f.free, f.ready = nil, nil, false
	capacity := max(2*stored, f.minKeys)
	if capacity > f.maxKeys/2 {
		// The last growth: past half the bound, the bound. A filter is
		// then at most half the bound or at it, and the next growth
		// never holds two larger than half.
		capacity = f.maxKeys
	}
	m, k := bloom.EstimateParameters(capacity, filterFalsePositives)
	bits, free, err := allocBits((m + 63) / 64)
	if err != nil {
		f.release()
		return fmt.Errorf("dedup filter of %d bits: %w", m, err)
	}
	f.f, f.free, f.keys, f.gone, f.capacity, f.building = bloom.FromWithM(bits, m, k), free, 0, 0, capacity, true
	return nil
}

// release frees the filters (a failed build, Close): every key goes to the
// LSM.
func (f *keyFilter) release() {
	if f.f != nil {
		f.free()
	}
	if f.prev != nil {
		f.freePrev()
	}
	f.f, f.free, f.prev, f.freePrev, f.ready, f.building = nil, nil, nil, nil, false, false
}

// built makes the filter being built the one that answers.
func (f *keyFilter) built() {
	if f.prev != nil {
		f.freePrev()
	}
	f.prev, f.freePrev, f.ready, f.building = nil, nil, true, false
}

// buildFilter starts a build when the filter is missing or full; s.mu is
// held. The build's scan starts after the writer adds to the new filter, so
// every key is in one or the other.
func (s *Store) buildFilter() {
	if !s.filter.wantBuild() {
		return
	}
	// The keys stored: counted by the filter, or, before the first one,
	// bounded by the events ever stored.
	var stored uint
	if s.filter.f != nil {
		stored = s.filter.keys - min(s.filter.gone, s.filter.keys)
	} else {
		for _, c := range s.counters {
			stored += uint(c.Unique)
		}
	}
	if err := s.filter.startBuild(stored); err != nil {
		s.log.Error("no dedup filter: lookups go to the LSM", "err", err)
		s.filter.maxKeys = 0
		return
	}
	s.builds.Go(func() {
		if s.buildGate != nil {
			select {
			case <-s.buildGate:
			case <-s.buildCtx.Done():
			}
		}
		t0 := time.Now()
		err := s.scanKeys(s.buildCtx)
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			// No filter, and no build again: the store goes on with
			// the LSM alone.
			if !errors.Is(err, context.Canceled) {
				s.log.Error("dedup filter not built: lookups go to the LSM", "err", err)
			}
			s.filter.release()
			s.filter.maxKeys = 0
			return
		}
		s.filter.built()
		s.log.Debug("dedup filter built", "keys", s.filter.keys, "capacity", s.filter.capacity,
			"bytes", s.filter.f.Cap()/8, "took", time.Since(t0))
	})
}

// scanKeys adds every stored dedup key to the filter, a chunk at a time,
// each from an iterator of its own: an iterator keeps every memtable that
// existed at its creation in memory until it closes, and a scan of millions
// of keys outlasts several.
func (s *Store) scanKeys(ctx context.Context) error {
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
		s.filter.addToNew(keys)
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
		buf = s.buckets.idKey(buf, it.Key())
		keys = append(keys, buf[start:len(buf):len(buf)])
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, nil, fmt.Errorf("scan dedup keys: %w", err)
	}
	return keys, next, nil
}
