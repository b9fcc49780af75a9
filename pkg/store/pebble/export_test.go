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
