package sqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/store/sqlite"
)

// BenchmarkPersistUUID is the all-in-one store path on random keys, as real
// publishers send them: batches of 1,000 events with UUIDv4 ids, 20% of them
// already stored, from 8 concurrent callers (group commit), on top of
// 200,000 events stored before the timer starts.
func BenchmarkPersistUUID(b *testing.B) {
	ctx := context.Background()
	var opts []sqlite.Option
	// Compares checkpoint sizes in one build: BENCH_CHECKPOINT_PAGES=1000 is
	// SQLite's default.
	if n, err := strconv.Atoi(os.Getenv("BENCH_CHECKPOINT_PAGES")); err == nil {
		opts = append(opts, sqlite.WithCheckpointPages(n))
	}
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "events.db"), opts...)
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(func() { s.Close() })
	rng := rand.New(rand.NewPCG(1, 2))
	mk := func() event.Event {
		u := [2]uint64{rng.Uint64(), rng.Uint64()}
		id := fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", u[0]>>32, u[0]>>16&0xffff, u[0]&0xfff,
			u[1]>>48&0x3fff|0x8000, u[1]&0xffffffffffff)
		return event.Event{
			Topic: fmt.Sprintf("topic-%d", rng.IntN(10)), EventID: id, Source: "bench",
			Timestamp: time.Unix(1_700_000_000, 0), Payload: []byte(`{"seq":1,"data":"abcdefghijklmnopqrstuvwxyz0123456789abcd"}`),
		}
	}
	var stored []event.Event
	for range 200 {
		batch := make([]event.Event, 1000)
		for i := range batch {
			batch[i] = mk()
		}
		if _, err := s.Persist(ctx, &process.Batch{Events: batch}); err != nil {
			b.Fatal(err)
		}
		stored = append(stored, batch[:200]...)
	}
	batches := make([][]event.Event, b.N)
	for k := range batches {
		evs := make([]event.Event, 1000)
		for i := range evs {
			if i < 200 {
				evs[i] = stored[rng.IntN(len(stored))]
			} else {
				evs[i] = mk()
			}
		}
		// Distinct keys within a batch, as the processing core hands them over.
		seen := map[event.Key]bool{}
		out := evs[:0]
		for _, e := range evs {
			if !seen[e.Key()] {
				seen[e.Key()] = true
				out = append(out, e)
			}
		}
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		batches[k] = out
	}
	work := make(chan []event.Event)
	var wg sync.WaitGroup
	b.ResetTimer()
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
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "events/s")
}
