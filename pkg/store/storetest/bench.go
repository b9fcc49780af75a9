package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// BenchBatchSize is the events per batch of the store benchmarks: a worker's
// batch of hundreds of Kafka records.
const BenchBatchSize = 1000

// BenchEvent returns event i of the benchmark stream named prefix: 20
// topics, a payload of ~100 bytes, as the publisher sends them.
func BenchEvent(prefix string, i int) event.Event {
	id := prefix + "-" + strconv.Itoa(i)
	return event.Event{
		Topic:     fmt.Sprintf("topic-%02d", i%20),
		EventID:   id,
		Timestamp: baseTime.Add(time.Duration(i) * time.Millisecond),
		Source:    "bench",
		Payload:   fmt.Appendf(nil, `{"order":%d,"user":"u-%d","amount":%d.25,"note":"benchmark payload"}`, i, i%977, i%500),
	}
}

// BenchPersist measures s.Persist of b.N batches of BenchBatchSize events,
// 80% new and 20% already stored, from writers goroutines that each own a
// shard and, on an OffsetStore, a partition offset, as workers do. It
// reports events/s.
func BenchPersist(b *testing.B, s process.Store, writers int) {
	ctx := context.Background()
	const dups = BenchBatchSize / 5
	seed := make([]event.Event, BenchBatchSize)
	for i := range seed {
		seed[i] = BenchEvent("seed", i)
	}
	if _, err := s.Persist(ctx, &process.Batch{Events: seed}); err != nil {
		b.Fatalf("seed: %v", err)
	}
	batches := make([][]event.Event, b.N)
	for k := range batches {
		evs := make([]event.Event, 0, BenchBatchSize)
		for j := range BenchBatchSize - dups {
			evs = append(evs, BenchEvent("new", k*(BenchBatchSize-dups)+j))
		}
		for j := range dups {
			evs = append(evs, seed[(k*dups+j)%len(seed)])
		}
		rng := rand.New(rand.NewPCG(uint64(k), 1))
		rng.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		batches[k] = evs
	}

	_, keepsOffsets := s.(OffsetStore)
	var next atomic.Int64
	var unique atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range writers {
		wg.Go(func() {
			var offset int64
			for {
				k := int(next.Add(1) - 1)
				if k >= len(batches) {
					return
				}
				batch := &process.Batch{Events: batches[k], Shard: w}
				if keepsOffsets {
					batch.Offset = &process.Offset{Topic: "events", Partition: w, From: offset, Next: offset + BenchBatchSize, First: offset == 0}
				}
				p, err := s.Persist(ctx, batch)
				if err != nil {
					b.Errorf("persist: %v", err)
					return
				}
				offset += BenchBatchSize
				n := 0
				for _, isNew := range p.New {
					if isNew {
						n++
					}
				}
				unique.Add(int64(n))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if want := int64(b.N * (BenchBatchSize - dups)); unique.Load() != want {
		b.Fatalf("%d events new, want %d", unique.Load(), want)
	}
	b.ReportMetric(float64(b.N*BenchBatchSize)/b.Elapsed().Seconds(), "events/s")
}

// RandomUUID returns a random UUIDv4 in canonical text form, as most
// publishers make their event ids.
func RandomUUID(rng *rand.Rand) string {
	hi, lo := rng.Uint64(), rng.Uint64()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", hi>>32, hi>>16&0xffff, hi&0xfff,
		lo>>48&0x3fff|0x8000, lo&0xffffffffffff)
}

// uuidEvents makes events as real publishers send them: random UUIDv4 ids,
// ten topics, a small payload.
func uuidEvents(rng *rand.Rand) func() event.Event {
	return func() event.Event {
		return event.Event{
			Topic: fmt.Sprintf("topic-%d", rng.IntN(10)), EventID: RandomUUID(rng), Source: "bench",
			Timestamp: time.Unix(1_700_000_000, 0), Payload: []byte(`{"seq":1,"data":"abcdefghijklmnopqrstuvwxyz0123456789abcd"}`),
		}
	}
}

// uuidBatch returns 1,000 events, the first 200 drawn from stored (when it
// has any) and the rest new, without a key twice (the processing core hands
// batches over that way), shuffled.
func uuidBatch(rng *rand.Rand, mk func() event.Event, stored []event.Event) []event.Event {
	evs := make([]event.Event, 1000)
	for i := range evs {
		if i < 200 && len(stored) > 0 {
			evs[i] = stored[rng.IntN(len(stored))]
		} else {
			evs[i] = mk()
		}
	}
	seen := map[event.Key]bool{}
	out := evs[:0]
	for _, e := range evs {
		if !seen[e.Key()] {
			seen[e.Key()] = true
			out = append(out, e)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// persistAll persists the batches from 8 concurrent callers (group commit).
func persistAll(b *testing.B, s process.Store, batches [][]event.Event) {
	ctx := context.Background()
	work := make(chan []event.Event)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for evs := range work {
				if _, err := s.Persist(ctx, &process.Batch{Events: evs}); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for _, evs := range batches {
		work <- evs
	}
	close(work)
	wg.Wait()
}

// BenchPersistUUID is an all-in-one store path on random keys, as real
// publishers send them: batches of 1,000 events with UUIDv4 ids, 20% of them
// already stored, from 8 concurrent callers (group commit), on top of
// 200,000 events stored before the timer starts. It reports events/s.
func BenchPersistUUID(b *testing.B, s process.Store) {
	rng := rand.New(rand.NewPCG(1, 2))
	mk := uuidEvents(rng)
	var stored []event.Event
	for range 200 {
		batch := make([]event.Event, 1000)
		for i := range batch {
			batch[i] = mk()
		}
		if _, err := s.Persist(context.Background(), &process.Batch{Events: batch}); err != nil {
			b.Fatal(err)
		}
		stored = append(stored, batch[:200]...)
	}
	batches := make([][]event.Event, b.N)
	for k := range batches {
		batches[k] = uuidBatch(rng, mk, stored)
	}
	b.ResetTimer()
	persistAll(b, s, batches)
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}

// Sized is a store that tells how many events it holds and its bytes on
// disk.
type Sized interface {
	Size(ctx context.Context) (events, bytes int64, err error)
}

// BenchFillUUID shows how a store's speed on random keys changes as it
// grows: it persists b.N millions of events as BenchPersistUUID does (20% of
// each batch repeats one of the last 65,536 new events) and logs each
// million's rate with the store's size at its start. It reports the rate of
// the first and of the last million. Run it with -benchtime=Nx.
func BenchFillUUID(b *testing.B, s Sized) {
	ctx := context.Background()
	store, ok := s.(process.Store)
	if !ok {
		b.Fatalf("%T is not a process.Store", s)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	mk := uuidEvents(rng)
	recent := make([]event.Event, 0, 1<<16)
	var first, last float64
	for m := range b.N {
		b.StopTimer()
		batches := make([][]event.Event, 1000)
		for k := range batches {
			batches[k] = uuidBatch(rng, mk, recent)
			for _, e := range batches[k] {
				if len(recent) < cap(recent) {
					recent = append(recent, e)
				} else {
					recent[rng.IntN(len(recent))] = e
				}
			}
		}
		events, bytes, err := s.Size(ctx)
		if err != nil {
			b.Fatalf("size: %v", err)
		}
		b.StartTimer()
		start := time.Now()
		persistAll(b, store, batches)
		n := 0
		for _, batch := range batches {
			n += len(batch)
		}
		rate := float64(n) / time.Since(start).Seconds()
		b.Logf("million %d: %.0f events/s; %d events, %d MiB stored at its start", m+1, rate, events, bytes>>20)
		if m == 0 {
			first = rate
		}
		last = rate
	}
	b.ReportMetric(first, "first-events/s")
	b.ReportMetric(last, "last-events/s")
}
