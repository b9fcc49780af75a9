package pebble_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
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

// The contract again with buckets of four seqs, so that its events spread
// over many: with the filter, and without it, where every key is looked for
// in every bucket.
func TestContractSmallBuckets(t *testing.T) {
	for name, opts := range map[string][]pebble.Option{
		"filter":    {pebble.WithBucketBits(2)},
		"no filter": {pebble.WithBucketBits(2), pebble.WithFilter(0)},
	} {
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, storetest.NoOffsets, func(t *testing.T) storetest.Subject {
				return storetest.Subject{Store: open(t, opts...), TimeResolution: time.Microsecond}
			})
		})
	}
}

// BenchmarkPersistUUID: storetest.BenchPersistUUID on Pebble.
func BenchmarkPersistUUID(b *testing.B) {
	storetest.BenchPersistUUID(b, open(b))
}

// BenchmarkFillUUID: storetest.BenchFillUUID on Pebble (-benchtime=5x: five
// million events). BENCH_METRICS names a file for Pebble's metrics at the
// end: its levels, compactions and cache.
func BenchmarkFillUUID(b *testing.B) {
	s := open(b)
	storetest.BenchFillUUID(b, s)
	if f := os.Getenv("BENCH_METRICS"); f != "" {
		if err := os.WriteFile(f, []byte(s.Metrics()), 0o644); err != nil {
			b.Error(err)
		}
	}
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

// A store written before the packed key layout keeps finding its keys: the
// layout is the store's, read at every open, not the build's.
func TestOlderStoreKeepsTextKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ev := func(id string) event.Event {
		return event.Event{Topic: "orders", EventID: id, Source: "test", Timestamp: time.Unix(1_700_000_000, 0), Payload: []byte(`{}`)}
	}
	const (
		lower = "0f8e7d6c-5b4a-4392-a1b0-c9d8e7f6a5b4"
		upper = "0F8E7D6C-5B4A-4392-A1B0-C9D8E7F6A5B4"
		other = "9b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
	)
	persist := func(opts []pebble.Option, ids []string, want []bool) {
		t.Helper()
		s, err := pebble.Open(ctx, dir, opts...)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer s.Close()
		if len(opts) > 0 { // the older store: as those were, without a layout record
			defer func() {
				if err := s.ForgetLayout(); err != nil {
					t.Fatalf("forget layout: %v", err)
				}
			}()
		}
		b := &process.Batch{}
		for _, id := range ids {
			b.Events = append(b.Events, ev(id))
		}
		p, err := s.Persist(ctx, b)
		if err != nil {
			t.Fatalf("persist: %v", err)
		}
		if !slices.Equal(p.New, want) {
			t.Fatalf("persist %v: new %v, want %v", ids, p.New, want)
		}
	}
	persist([]pebble.Option{pebble.WithTextKeys()}, []string{lower}, []bool{true})
	persist(nil, []string{lower, upper, other}, []bool{false, true, true})
	persist(nil, []string{lower, upper, other}, []bool{false, false, false})

	// And a new store packs its keys, and finds them after a restart.
	dir = t.TempDir()
	persist(nil, []string{lower, upper}, []bool{true, true})
	persist(nil, []string{upper, lower, other}, []bool{false, false, true})
}

// A store written before buckets keeps its layout: its dedup keys and topic
// index are found where it wrote them, and a new build writes there too.
func TestOlderStoreKeepsUnbucketedKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	batch := func(ids ...string) *process.Batch {
		b := &process.Batch{}
		for _, id := range ids {
			b.Events = append(b.Events, event.Event{Topic: "orders", EventID: id, Source: "test",
				Timestamp: time.Unix(1_700_000_000, 0), Payload: []byte(`{}`)})
		}
		return b
	}
	step := func(opts []pebble.Option, ids []string, want []bool, wantEvents int) {
		t.Helper()
		s, err := pebble.Open(ctx, dir, opts...)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer s.Close()
		p, err := s.Persist(ctx, batch(ids...))
		if err != nil {
			t.Fatalf("persist: %v", err)
		}
		if !slices.Equal(p.New, want) {
			t.Fatalf("persist %v: new %v, want %v", ids, p.New, want)
		}
		got, err := s.Events(ctx, "orders", event.Position{}, 100)
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		if len(got) != wantEvents {
			t.Fatalf("%d events of the topic, want %d", len(got), wantEvents)
		}
	}
	const (
		a = "0f8e7d6c-5b4a-4392-a1b0-c9d8e7f6a5b4"
		b = "9b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
		c = "order-3"
	)
	step([]pebble.Option{pebble.WithPackedKeys()}, []string{a, c}, []bool{true, true}, 2)
	step([]pebble.Option{pebble.WithBucketBits(1)}, []string{a, b, c}, []bool{false, true, false}, 3)
	step(nil, []string{c, b, a}, []bool{false, false, false}, 3)
}

// No table holds two kinds of record: the event log's tables never overlap
// the random dedup keys, so compactions can move them down whole.
func TestTablesHoldOneKind(t *testing.T) {
	s := open(t)
	b := &process.Batch{}
	for i := range 100 {
		b.Events = append(b.Events, event.Event{Topic: "t" + strconv.Itoa(i%3), EventID: strconv.Itoa(i),
			Source: "test", Timestamp: time.Unix(1_700_000_000, 0), Payload: []byte(`{}`)})
	}
	if _, err := s.Persist(context.Background(), b); err != nil {
		t.Fatalf("persist: %v", err)
	}
	tables, err := s.TableBounds()
	if err != nil {
		t.Fatalf("tables: %v", err)
	}
	if len(tables) < 4 { // events, topic index, dedup keys, counters (and meta)
		t.Fatalf("%d tables after a flush, want one per kind of record", len(tables))
	}
	for _, tb := range tables {
		if tb[0][0] != tb[1][0] {
			t.Errorf("a table holds keys %q to %q", tb[0], tb[1])
		}
	}
}
