package pebble_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/event-aggregator/event-aggregator/pkg/store/pebble"
	"github.com/event-aggregator/event-aggregator/pkg/store/storetest"
)

func open(t testing.TB, opts ...pebble.Option) *pebble.Store {
	t.Helper()
	s, err := pebble.Open(context.Background(), t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

func TestContract(t *testing.T) {
	// The all-in-one has no Kafka: no offsets, and a batch with one is refused.
	storetest.Run(t, storetest.NoOffsets, func(t *testing.T) storetest.Subject {
		// Timestamps are kept as Unix microseconds, as the other stores keep them.
		return storetest.Subject{Store: open(t), TimeResolution: time.Microsecond}
	})
}

// BenchmarkPersistUUID: storetest.BenchPersistUUID on Pebble.
func BenchmarkPersistUUID(b *testing.B) {
	storetest.BenchPersistUUID(b, open(b))
}

// BenchmarkPersistUUIDSized compares memory settings in one build:
// BENCH_CACHE_MB and BENCH_MEMTABLE_MB.
func BenchmarkPersistUUIDSized(b *testing.B) {
	var opts []pebble.Option
	if n, err := strconv.Atoi(os.Getenv("BENCH_CACHE_MB")); err == nil {
		opts = append(opts, pebble.WithCache(int64(n)<<20))
	}
	if n, err := strconv.Atoi(os.Getenv("BENCH_MEMTABLE_MB")); err == nil {
		opts = append(opts, pebble.WithMemtable(int64(n)<<20))
	}
	block, _ := strconv.Atoi(os.Getenv("BENCH_BLOCK_KB"))
	index, _ := strconv.Atoi(os.Getenv("BENCH_INDEX_KB"))
	opts = append(opts, pebble.WithTuning(func(o *pebbledb.Options) {
		if block > 0 {
			o.Levels[0].BlockSize = block << 10
		}
		if index > 0 {
			o.Levels[0].IndexBlockSize = index << 10
		}
	}))
	s := open(b, opts...)
	storetest.BenchPersistUUID(b, s)
	if os.Getenv("BENCH_METRICS") != "" {
		os.WriteFile(os.Getenv("BENCH_METRICS"), []byte(s.Metrics()), 0o644)
	}
}
