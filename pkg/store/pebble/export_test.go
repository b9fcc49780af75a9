package pebble

import (
	pebbledb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// WithTuning changes Pebble's options before Open (benchmarks compare
// settings with it).
func WithTuning(f func(*pebbledb.Options)) Option { return func(o *options) { o.tune = f } }

// Metrics prints Pebble's metrics (benchmarks report them).
func (s *Store) Metrics() string { return s.db.Metrics().String() }

// WithFS puts the database on fs.
func WithFS(fs vfs.FS) Option { return func(o *options) { o.fs = fs } }

// WithTextKeys creates a store in the text key layout, as stores were
// created before the packed one.
func WithTextKeys() Option { return func(o *options) { o.layout = layoutText } }

// WithPackedKeys creates a store in the packed key layout without buckets,
// as stores were created before buckets.
func WithPackedKeys() Option { return func(o *options) { o.layout = layoutPacked } }

// WithBucketBits creates a store whose buckets span 1<<bits seqs, so that
// tests fill many.
func WithBucketBits(bits uint8) Option { return func(o *options) { o.bucketBits = buckets(bits) } }

// ForgetLayout deletes the layout record: stores written before there was a
// choice of layout have none.
func (s *Store) ForgetLayout() error { return s.db.Delete(metaLayout, pebbledb.Sync) }

// TableBounds flushes the memtable, then returns the first and last key of
// every table.
func (s *Store) TableBounds() ([][2][]byte, error) {
	if err := s.db.Flush(); err != nil {
		return nil, err
	}
	levels, err := s.db.SSTables()
	if err != nil {
		return nil, err
	}
	var out [][2][]byte
	for _, level := range levels {
		for _, t := range level {
			out = append(out, [2][]byte{t.Smallest.UserKey, t.Largest.UserKey})
		}
	}
	return out, nil
}

// WithFilterKeys sizes the dedup filter for at least n keys, so that tests
// see it outgrown and rebuilt.
func WithFilterKeys(n uint) Option { return func(o *options) { o.filterKeys = n } }

// WithFilterGate makes each build of the dedup filter wait for a value
// from gate before it scans the keys.
func WithFilterGate(gate <-chan struct{}) Option { return func(o *options) { o.buildGate = gate } }

// FilterReady reports whether lookups use a complete filter.
func (s *Store) FilterReady() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.filter.ready
}

// FilterChecks is how many table filters the LSM has consulted.
func (s *Store) FilterChecks() int64 {
	m := s.db.Metrics().Filter
	return m.Hits + m.Misses
}
