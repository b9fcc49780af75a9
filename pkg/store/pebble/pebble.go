// Package pebble is an all-in-one Store and Reader on Pebble, an LSM
// key-value store: made for random-key ingest, where a B-tree writes a page
// per new random key, an LSM appends every write to its log and sorts it in
// the background. One goroutine writes (group commit); every group commit is
// in the write-ahead log before any caller hears "stored" (WithSync).
package pebble

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"sync"

	pebbledb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/store/groupcommit"
)

// Store persists batches into a Pebble database and reads them back.
type Store struct {
	db        *pebbledb.DB
	w         *groupcommit.Writer
	log       *slog.Logger
	closeOnce sync.Once

	// The filter's builds, stopped by Close.
	builds     sync.WaitGroup
	buildCtx   context.Context
	stopBuilds context.CancelFunc
	buildGate  <-chan struct{} // when set, each build waits for a value (tests hold one)

	// mu serialises the writers: group commits and retention.
	mu       sync.Mutex
	seq      uint64               // last seq handed out
	layout   keyLayout            // of the dedup keys, fixed at creation
	buckets  buckets              // of the dedup keys and topic index, fixed at creation
	oldest   uint32               // the oldest bucket that may hold a dedup key
	hint     uint32               // the older bucket where the last lookups found most keys
	counters map[string]*counters // every topic's counters, as committed
	filter   keyFilter            // of the dedup keys
}

// Option configures a Store.
type Option func(*options)

type options struct {
	sync          string
	cacheBytes    int64
	memtableBytes int64
	filterBytes   int64 // the most memory of the dedup filter
	filterKeys    uint  // the fewest keys it is sized for
	log           *slog.Logger
	layout        keyLayout               // of a new store; tests create older ones
	bucketBits    buckets                 // of a new store of layoutBuckets; tests make them small
	tune          func(*pebbledb.Options) // tests compare settings with it
	fs            vfs.FS                  // tests count syncs with it
	buildGate     <-chan struct{}         // tests hold the filter's builds with it
}

// Defaults of the memory settings: two memtables may be in memory at once
// (one being flushed), reserved in the block cache; the rest of it holds the
// tables' index and filter blocks and hot data. With the dedup filter in
// front, few lookups need the dedup index's blocks, and larger memtables
// mean fewer flushes of random keys to compact.
const (
	DefaultCacheBytes    = 48 << 20
	DefaultMemtableBytes = 16 << 20
)

// WithSync sets when a commit returns: "normal" (the default) once its log
// record is written to the operating system, which survives any crash of
// the process; "full" once it is flushed to the disk, which also survives
// power loss, at the price of a disk flush per group commit.
func WithSync(mode string) Option { return func(o *options) { o.sync = mode } }

// WithCache sets the block cache, in bytes.
func WithCache(bytes int64) Option { return func(o *options) { o.cacheBytes = bytes } }

// WithMemtable sets the size of a memtable, in bytes.
func WithMemtable(bytes int64) Option { return func(o *options) { o.memtableBytes = bytes } }

// WithFilter bounds the memory of the in-memory filter of dedup keys, in
// bytes (0: no filter, every key is looked up in the LSM).
func WithFilter(bytes int64) Option { return func(o *options) { o.filterBytes = bytes } }

// WithLogger sends Pebble's own messages (recovery, background errors) to log.
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// ErrOffset is returned by Persist for a batch that carries a Kafka offset.
var ErrOffset = groupcommit.ErrOffset

// ErrClosed is returned by Persist after Close.
var ErrClosed = groupcommit.ErrClosed

// Open opens (creating when missing) the database in dir.
func Open(ctx context.Context, dir string, opts ...Option) (*Store, error) {
	o := options{sync: "normal", cacheBytes: DefaultCacheBytes, memtableBytes: DefaultMemtableBytes,
		filterBytes: DefaultFilterBytes, filterKeys: DefaultFilterKeys, layout: layoutBuckets,
		bucketBits: DefaultBucketBits}
	for _, opt := range opts {
		opt(&o)
	}
	if o.sync != "normal" && o.sync != "full" {
		return nil, fmt.Errorf("pebble sync mode %q: want normal or full", o.sync)
	}
	if o.cacheBytes < 0 || o.memtableBytes < 1<<20 || o.filterBytes < 0 {
		return nil, fmt.Errorf("pebble cache %d, memtable %d and filter %d bytes: want >= 0, >= 1 MiB and >= 0",
			o.cacheBytes, o.memtableBytes, o.filterBytes)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.fs == nil {
		o.fs = vfs.Default
	}
	if err := o.fs.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	cache := pebbledb.NewCache(o.cacheBytes)
	defer cache.Unref() // the database holds its own reference
	po := &pebbledb.Options{
		Cache:              cache,
		MemTableSize:       uint64(o.memtableBytes),
		FormatMajorVersion: pebbledb.FormatNewest,
		Logger:             logger{o.log},
		FS:                 o.fs,
	}
	if o.sync == "normal" {
		po.FS = osOnlyWAL{po.FS}
	}
	// Bloom filters on every level: most keys looked up are new, and a
	// filter answers "not here" for a table without reading it.
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	// A table ends where a kind of record ends (splitAtKinds), so the event
	// log's tables hold no random dedup keys: new ones never overlap old
	// ones, and compactions move them down rather than rewrite them.
	po.Experimental.SpanPolicyFunc = splitAtKinds
	// Random dedup keys overlap all of the base level, so each compaction
	// from L0 rewrites the base level's dedup keys whole (the event log's
	// tables move down instead). A smaller base level (Pebble's is 64 MiB)
	// and twice as many L0 sublevels before a compaction (Pebble's: 4) make
	// those rewrites smaller and fewer: 12% less CPU a million events in
	// process, fresh and at 3-4 M stored (docs/benchmarks.md). The filter
	// in memory spares most lookups the extra sublevels; writes still stop
	// at the same distance above the threshold as Pebble's defaults (8).
	po.LBaseMaxBytes = 16 << 20
	po.L0CompactionThreshold = 8
	po.L0StopWritesThreshold = 16
	if o.tune != nil {
		o.tune(po)
	}
	db, err := pebbledb.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("open pebble: %w", err)
	}
	s := &Store{db: db, log: o.log, counters: map[string]*counters{}, buildGate: o.buildGate,
		filter: keyFilter{minKeys: o.filterKeys, maxKeys: filterKeys(o.filterBytes)}}
	if err := s.load(o.layout, o.bucketBits); err != nil {
		db.Close()
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open pebble: %w", err)
	}
	s.buildCtx, s.stopBuilds = context.WithCancel(context.Background())
	s.mu.Lock()
	s.buildFilter()
	s.mu.Unlock()
	s.w = groupcommit.New(s.commitGroup)
	return s, nil
}

// load reads the key layout, the last seq and the counters. A new store
// gets the layout asked for.
func (s *Store) load(layout keyLayout, bits buckets) error {
	if err := s.loadLayout(layout, bits); err != nil {
		return err
	}
	v, closer, err := s.db.Get(metaSeq)
	switch {
	case err == nil:
		if len(v) != 8 {
			closer.Close()
			return fmt.Errorf("read last seq: %w", errCorrupt)
		}
		s.seq = beUint64(v)
		closer.Close()
	case !errors.Is(err, pebbledb.ErrNotFound):
		return fmt.Errorf("read last seq: %w", err)
	}
	it, err := s.db.NewIter(prefixBounds([]byte{prefixCounter}))
	if err != nil {
		return fmt.Errorf("read counters: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		topic := string(it.Key()[1:])
		c, err := parseCounters(topic, it.Value())
		if err != nil {
			return err
		}
		s.counters[topic] = &c
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("read counters: %w", err)
	}
	return s.findOldestBucket()
}

// findOldestBucket finds the bucket of the first dedup key; a store without
// any has none before the bucket of its next seq. Keys are written into the
// newest bucket only, so no bucket before it ever holds one again.
func (s *Store) findOldestBucket() error {
	if s.buckets == 0 {
		return nil
	}
	it, err := s.db.NewIter(prefixBounds([]byte{prefixKey}))
	if err != nil {
		return fmt.Errorf("read the first dedup key: %w", err)
	}
	s.oldest = s.buckets.of(s.seq)
	if it.First() {
		s.oldest = bucketOf(it.Key())
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("read the first dedup key: %w", err)
	}
	return nil
}

// loadLayout reads the store's key layout: one byte, and the bits of its
// buckets for layoutBuckets. A store without the record is new, or was
// written before the packed layout: it has dedup keys then, and they are
// text.
func (s *Store) loadLayout(layout keyLayout, bits buckets) error {
	v, closer, err := s.db.Get(metaLayout)
	if err == nil {
		defer closer.Close()
		switch {
		case len(v) == 1 && (keyLayout(v[0]) == layoutText || keyLayout(v[0]) == layoutPacked):
		case len(v) == 2 && keyLayout(v[0]) == layoutBuckets && v[1] > 0 && v[1] <= 40:
			s.buckets = buckets(v[1])
		default:
			return fmt.Errorf("read key layout %x: %w", v, errCorrupt)
		}
		s.layout = keyLayout(v[0])
		return nil
	}
	if !errors.Is(err, pebbledb.ErrNotFound) {
		return fmt.Errorf("read key layout: %w", err)
	}
	it, err := s.db.NewIter(prefixBounds([]byte{prefixKey}))
	if err != nil {
		return fmt.Errorf("read key layout: %w", err)
	}
	hasKeys := it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("read key layout: %w", err)
	}
	record := []byte{byte(layout)}
	switch {
	case hasKeys:
		layout, record = layoutText, []byte{byte(layoutText)}
	case layout == layoutBuckets:
		s.buckets = bits
		record = append(record, byte(bits))
	}
	s.layout = layout
	if err := s.db.Set(metaLayout, record, pebbledb.Sync); err != nil {
		return fmt.Errorf("write key layout: %w", err)
	}
	return nil
}

// Close commits the batches already queued, stops a filter build, then
// closes the database.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.w.Close()
		s.stopBuilds()
		s.builds.Wait()
		s.mu.Lock() // a retention batch in flight finishes first
		defer s.mu.Unlock()
		s.filter.release()
		if cerr := s.db.Close(); cerr != nil {
			err = fmt.Errorf("close pebble: %w", cerr)
		}
	})
	return err
}

// Ping checks that the database answers.
func (s *Store) Ping(context.Context) error {
	_, closer, err := s.db.Get(metaSeq)
	if err == nil {
		closer.Close()
	}
	if err != nil && !errors.Is(err, pebbledb.ErrNotFound) {
		return fmt.Errorf("ping pebble: %w", err)
	}
	return nil
}

// Persist writes the batch's new events and its counters atomically, in one
// commit shared with the batches queued at the same time. A batch with an
// Offset is refused with ErrOffset before it is queued.
func (s *Store) Persist(ctx context.Context, b *process.Batch) (process.Persisted, error) {
	return s.w.Persist(ctx, b)
}

// commitGroup writes every batch of the group in one synced Pebble batch.
// The dedup keys of the group are looked up and written in key order: a
// skiplist or table walked in order keeps its path in the CPU's caches,
// where random keys would miss at every level. Seqs follow the batches'
// order; among copies of one key the earliest wins.
func (s *Store) commitGroup(group []*process.Batch) ([]process.Persisted, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range group {
		n += len(b.Events)
	}
	all := make([]slot, 0, n)
	// The keys share one buffer: slices of an outgrown buffer stay valid.
	var keys []byte
	outs := make([]process.Persisted, len(group))
	for gi, b := range group {
		outs[gi].New = make([]bool, len(b.Events))
		for i := range b.Events {
			e := &b.Events[i]
			if e.Payload == nil {
				return nil, fmt.Errorf("persist event %q of topic %q: no payload", e.EventID, e.Topic)
			}
			start := len(keys)
			keys = s.layout.dedupKey(keys, e.Topic, e.EventID)
			all = append(all, slot{key: keys[start:len(keys):len(keys)], batch: gi, index: i})
		}
	}
	// Equal keys sort in group order, so the first copy wins. (A stable
	// sort on the key alone does the same, at twice the cost.)
	slices.SortFunc(all, func(a, b slot) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.batch, b.batch), cmp.Compare(a.index, b.index))
	})
	if err := s.lookUp(all, outs); err != nil {
		return nil, err
	}

	now := nowMicro()
	wb := s.db.NewBatch()
	defer wb.Close()
	seq := s.seq
	changed := map[string]*counters{}
	count := func(topic string) *counters {
		c := changed[topic]
		if c == nil {
			c = &counters{Counts: event.Counts{Topic: topic}}
			if old := s.counters[topic]; old != nil {
				*c = *old
			}
			changed[topic] = c
		}
		return c
	}
	seqs := make([][]uint64, len(group))
	// A batch enters the memtable in its order, each insert starting from
	// where the one before ended; so each kind of record goes in key order
	// rather than interleaved: the log as numbered, then the topic index
	// topic by topic, then the dedup keys as sorted.
	topicSeqs := map[string][]uint64{}
	var key, val []byte
	for gi, b := range group {
		seqs[gi] = make([]uint64, len(b.Events))
		for i := range b.Events {
			e := &b.Events[i]
			c := count(e.Topic)
			c.Received++
			if !outs[gi].New[i] {
				c.Duplicates++
				continue
			}
			c.Unique++
			seq++
			seqs[gi][i] = seq
			key = eventKey(key[:0], seq)
			val = eventValue(val[:0], e, now)
			if err := wb.Set(key, val, nil); err != nil {
				return nil, fmt.Errorf("persist: %w", err)
			}
			topicSeqs[e.Topic] = append(topicSeqs[e.Topic], seq)
		}
		for topic, n := range b.Dropped {
			c := count(topic)
			c.Received += int64(n)
			c.Duplicates += int64(n)
		}
	}
	// In the order of their keys (a topic's length comes first); a group
	// holds few topics.
	topics := slices.SortedFunc(maps.Keys(topicSeqs), func(a, b string) int {
		return bytes.Compare(appendString(nil, a), appendString(nil, b))
	})
	for _, topic := range topics {
		for _, seq := range topicSeqs[topic] {
			key = s.buckets.topicKey(key[:0], topic, seq)
			if err := wb.Set(key, nil, nil); err != nil {
				return nil, fmt.Errorf("persist: %w", err)
			}
		}
	}
	added := make([][]byte, 0, len(all))
	for _, sl := range all {
		if seq := seqs[sl.batch][sl.index]; seq != 0 {
			key = s.buckets.dedupKey(key[:0], sl.key, s.buckets.of(seq))
			val = dedupValue(val[:0], seq)
			if err := wb.Set(key, val, nil); err != nil {
				return nil, fmt.Errorf("persist: %w", err)
			}
			added = append(added, sl.key)
		}
	}
	// Before the commit: a key of a commit that fails is a "maybe" the
	// LSM answers.
	s.filter.add(added)
	for topic, c := range changed {
		if err := wb.Set(counterKey(topic), c.value(), nil); err != nil {
			return nil, fmt.Errorf("persist: %w", err)
		}
	}
	if seq != s.seq {
		if err := wb.Set(metaSeq, appendSeq(nil, seq), nil); err != nil {
			return nil, fmt.Errorf("persist: %w", err)
		}
	}
	if err := wb.Commit(pebbledb.Sync); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	s.seq = seq
	for topic, c := range changed {
		s.counters[topic] = c
	}
	s.buildFilter()
	return outs, nil
}

// slot is one event of a group, by its dedup key.
type slot struct {
	key          []byte
	batch, index int
}

// lookUp marks new the first slot of each key (slots sorted by key) that
// the database does not hold: those the filter rules out, and those the LSM
// does not find. One iterator serves the whole group: a Get
// per key would set up an iterator over every level for each, and, like
// every point lookup by default, skip the bloom filters of the last level,
// the largest, reading one of its data blocks for each new key: with random
// keys, a block the cache rarely holds once the store outgrows it.
//
// With buckets, the keys the filter leaves are looked for one bucket at a
// time, each bucket in key order, until every key is found or every bucket
// is done: first the newest, where the copies of recent events are, then
// the older bucket where the group before found most (a replay of old
// events goes on where it was), then the others, newest first.
func (s *Store) lookUp(sorted []slot, outs []process.Persisted) error {
	it, err := s.db.NewIter(&pebbledb.IterOptions{UseL6Filters: true,
		LowerBound: []byte{prefixKey}, UpperBound: []byte{prefixKey + 1}})
	if err != nil {
		return fmt.Errorf("look up keys: %w", err)
	}
	var maybe []int // slots left to look for
	for j := range sorted {
		if j > 0 && bytes.Equal(sorted[j].key, sorted[j-1].key) {
			continue
		}
		switch {
		case !s.filter.mayHold(sorted[j].key):
			outs[sorted[j].batch].New[sorted[j].index] = true
		case s.buckets == 0:
			// Every dedup key is its own prefix (no two share one), so
			// a prefix seek finds exactly the key or nothing.
			outs[sorted[j].batch].New[sorted[j].index] = !it.SeekPrefixGE(sorted[j].key)
		default:
			maybe = append(maybe, j)
		}
	}
	var key []byte
	newest, hint := s.buckets.of(s.seq), min(max(s.hint, s.oldest), s.buckets.of(s.seq))
	found := map[uint32]int{} // keys found in each older bucket
	lookIn := func(b uint32) {
		left := maybe[:0]
		for _, j := range maybe {
			key = s.buckets.dedupKey(key[:0], sorted[j].key, b)
			if !it.SeekPrefixGE(key) {
				left = append(left, j)
			}
		}
		if b != newest && len(left) < len(maybe) {
			found[b] += len(maybe) - len(left)
		}
		maybe = left
	}
	if len(maybe) > 0 {
		lookIn(newest)
	}
	if len(maybe) > 0 && hint != newest {
		lookIn(hint)
	}
	for b := newest; b > s.oldest && len(maybe) > 0; {
		if b--; b != hint {
			lookIn(b)
		}
	}
	most := 0
	for b, n := range found {
		if n > most {
			s.hint, most = b, n
		}
	}
	for _, j := range maybe {
		outs[sorted[j].batch].New[sorted[j].index] = true
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("look up keys: %w", err)
	}
	return nil
}

// Events returns up to limit events after the position after, in
// processing order, optionally of one topic. One writer commits in seq
// order, so seq order is commit order: every position has Tx 0.
func (s *Store) Events(ctx context.Context, topic string, after event.Position, limit int) ([]event.Stored, error) {
	if after.Tx > 0 || limit <= 0 {
		return nil, nil
	}
	var from uint64
	if after.Tx == 0 && after.Seq > 0 {
		from = uint64(after.Seq) + 1
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	var out []event.Stored
	if topic != "" {
		// One topic: walk its index, and read each event from the log.
		var key []byte
		err := s.buckets.walkTopic(snap, topic, from, func(seq uint64) (bool, error) {
			key = eventKey(key[:0], seq)
			v, closer, err := snap.Get(key)
			if err != nil {
				return false, fmt.Errorf("read event %d: %w", seq, err)
			}
			e, err := parseEvent(seq, v)
			closer.Close()
			out = append(out, e)
			return len(out) < limit, err
		})
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		return out, ctx.Err()
	}
	// All topics: walk the event log itself.
	it, err := snap.NewIter(&pebbledb.IterOptions{LowerBound: eventKey(nil, from), UpperBound: []byte{prefixEvent + 1}})
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid() && len(out) < limit; it.Next() {
		e, err := parseEvent(beUint64(it.Key()[1:]), it.Value())
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		out = append(out, e)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return out, ctx.Err()
}

// walkTopic calls f with the seq of each of topic's events from seq from
// on, in order, until f returns false or an error. With buckets, it walks
// the topic's range in each bucket, and skips the buckets that hold none of
// its events.
func (bk buckets) walkTopic(r pebbledb.Reader, topic string, from uint64, f func(seq uint64) (bool, error)) error {
	bounds := &pebbledb.IterOptions{LowerBound: []byte{prefixTopic}, UpperBound: []byte{prefixTopic + 1}}
	if bk == 0 {
		bounds = prefixBounds(bk.topicPrefix(nil, 0, topic))
	}
	it, err := r.NewIter(bounds)
	if err != nil {
		return err
	}
	var prefix []byte
	for b := bk.of(from); ; b++ {
		prefix = bk.topicPrefix(prefix[:0], b, topic)
		if !it.SeekGE(appendSeq(prefix, max(from, uint64(b)<<bk))) {
			break
		}
		for ; it.Valid() && bytes.HasPrefix(it.Key(), prefix); it.Next() {
			more, err := f(beUint64(it.Key()[len(prefix):]))
			if err != nil || !more {
				return errors.Join(err, it.Close())
			}
		}
		if bk == 0 || !it.Valid() || b == math.MaxUint32 {
			break
		}
		// On to the next bucket that holds entries, of this topic or
		// another.
		if next := bucketOf(it.Key()); next > b+1 {
			b = next - 1
		}
	}
	return errors.Join(it.Error(), it.Close())
}

// Counts returns the counters of every topic, sorted by topic, as one
// snapshot.
func (s *Store) Counts(context.Context) ([]event.Counts, error) {
	all, err := s.readCounters()
	if err != nil {
		return nil, err
	}
	out := make([]event.Counts, len(all))
	for i, c := range all {
		out[i] = c.Counts
	}
	return out, nil
}

// readCounters reads every topic's counter record, sorted by topic.
func (s *Store) readCounters() ([]counters, error) {
	it, err := s.db.NewIter(prefixBounds([]byte{prefixCounter}))
	if err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	defer it.Close()
	var out []counters
	for it.First(); it.Valid(); it.Next() {
		c, err := parseCounters(string(it.Key()[1:]), it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	return out, nil
}

// Rows counts the stored events by scanning them (for tests of the
// invariants: it does not trust the counters).
func (s *Store) Rows(context.Context) (int64, error) {
	it, err := s.db.NewIter(prefixBounds([]byte{prefixEvent}))
	if err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	defer it.Close()
	var n int64
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	if err := it.Error(); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
}

// Size returns the events alive (counted: unique minus deleted) and the
// bytes of the database on disk (tables, logs, manifest).
func (s *Store) Size(context.Context) (events, size int64, err error) {
	all, err := s.readCounters()
	if err != nil {
		return 0, 0, fmt.Errorf("store size: %w", err)
	}
	for _, c := range all {
		events += c.Unique - c.deleted
	}
	return events, int64(s.db.Metrics().DiskSpaceUsage()), nil
}

// Deleted returns how many events retention has deleted, in all topics.
func (s *Store) Deleted(context.Context) (int64, error) {
	all, err := s.readCounters()
	if err != nil {
		return 0, fmt.Errorf("count deleted events: %w", err)
	}
	var n int64
	for _, c := range all {
		n += c.deleted
	}
	return n, nil
}

func prefixBounds(prefix []byte) *pebbledb.IterOptions {
	return &pebbledb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)}
}

// prefixEnd is the first key after every key that starts with prefix.
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // no upper bound
}

// splitAtKinds ends every flushed or compacted table at the end of the
// one-byte prefix range its first key is in.
func splitAtKinds(start []byte) (pebbledb.SpanPolicy, []byte, error) {
	if len(start) == 0 || start[0] == 0xff {
		return pebbledb.SpanPolicy{}, nil, nil
	}
	return pebbledb.SpanPolicy{}, []byte{start[0] + 1}, nil
}

// logger passes Pebble's messages to slog: recovery and compaction notes at
// debug, errors at error.
type logger struct{ log *slog.Logger }

func (l logger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l logger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is Pebble's report of a broken invariant: it must not return.
func (l logger) Fatalf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
	os.Exit(1)
}
