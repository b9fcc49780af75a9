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
