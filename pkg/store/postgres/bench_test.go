package postgres

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/event-aggregator/event-aggregator/pkg/store/storetest"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

func openBench(b *testing.B, conns int) *Store {
	b.Helper()
	s, err := Open(context.Background(), testdeps.NewPostgresDB(b), conns)
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(s.Close)
	if err := s.Migrate(context.Background()); err != nil {
		b.Fatalf("migrate: %v", err)
	}
	return s
}

// BenchmarkRawInsertUnnest is the baseline the store path is measured
// against (docs/architecture.md, "Performance"): the bare batch insert of new rows, one statement
// per batch in autocommit, no RETURNING, counters or offsets.
func BenchmarkRawInsertUnnest(b *testing.B) {
	const raw = `INSERT INTO events (topic, event_id, ts, source, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::json[])
ON CONFLICT (topic, event_id) DO NOTHING`
	for _, conns := range []int{1, 4} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			s := openBench(b, conns)
			batches := make([]columns, b.N)
			for k := range batches {
				c := columns{}
				for j := range storetest.BenchBatchSize {
					e := storetest.BenchEvent("raw", k*storetest.BenchBatchSize+j)
					c.topic = append(c.topic, e.Topic)
					c.id = append(c.id, e.EventID)
					c.ts = append(c.ts, e.Timestamp)
					c.source = append(c.source, e.Source)
					c.payload = append(c.payload, e.Payload)
				}
				batches[k] = c
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range conns {
				wg.Go(func() {
					for {
						k := int(next.Add(1) - 1)
						if k >= len(batches) {
							return
						}
						c := batches[k]
						tag, err := s.pool.Exec(context.Background(), raw, c.topic, c.id, c.ts, c.source, c.payload)
						if err != nil || tag.RowsAffected() != storetest.BenchBatchSize {
							b.Errorf("insert: %v (%d rows)", err, tag.RowsAffected())
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N*storetest.BenchBatchSize)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkPersist is the worker's store path: one transaction per batch
// with RETURNING, counters and the offset fence; 20% duplicates.
func BenchmarkPersist(b *testing.B) {
	for _, writers := range []int{1, 4} {
		b.Run(fmt.Sprintf("conns=%d", writers), func(b *testing.B) {
			storetest.BenchPersist(b, openBench(b, writers), writers)
		})
	}
}
