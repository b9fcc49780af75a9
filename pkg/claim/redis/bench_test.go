package redis_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	claimredis "github.com/event-aggregator/event-aggregator/pkg/claim/redis"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

const benchBatch = 1000

// BenchmarkClaim measures one pipelined Claim of 1,000 keys against the shared
// Redis: "new" keys take the SET path (the common case), "done" keys the
// duplicate path; "new-parallel" keeps GOMAXPROCS batches in flight. Keys expire within seconds so repeated runs leave nothing.
func BenchmarkClaim(b *testing.B) {
	client := newClient(b, testdeps.RedisURL(b))
	c := claimredis.New(client, "bench", 10*time.Second, 10*time.Second, claimredis.WithKeyPrefix("ea:bench:"))
	run := fmt.Sprint(time.Now().UnixNano())

	b.Run("new", func(b *testing.B) {
		batches := make([][]event.Key, b.N)
		for i := range batches {
			batches[i] = benchKeys(fmt.Sprintf("%s-new-%d", run, i))
		}
		b.ResetTimer()
		for i := range b.N {
			if _, err := c.Claim(b.Context(), batches[i], nil); err != nil {
				b.Fatal(err)
			}
		}
		reportKeys(b)
	})

	// Several batches in flight, as a worker processes several partitions.
	b.Run("new-parallel", func(b *testing.B) {
		batches := make([][]event.Key, b.N)
		for i := range batches {
			batches[i] = benchKeys(fmt.Sprintf("%s-par-%d", run, i))
		}
		var next atomic.Int64
		b.SetParallelism(4)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := c.Claim(b.Context(), batches[next.Add(1)-1], nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportKeys(b)
	})

	b.Run("done", func(b *testing.B) {
		keys := benchKeys(run + "-done")
		if err := c.MarkDone(b.Context(), keys, nil); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if _, err := c.Claim(b.Context(), keys, nil); err != nil {
				b.Fatal(err)
			}
		}
		reportKeys(b)
	})
}

// BenchmarkMarkDone measures one pipelined MarkDone of 1,000 keys.
func BenchmarkMarkDone(b *testing.B) {
	client := newClient(b, testdeps.RedisURL(b))
	c := claimredis.New(client, "bench", 10*time.Second, 10*time.Second, claimredis.WithKeyPrefix("ea:bench:"))
	keys := benchKeys(fmt.Sprint(time.Now().UnixNano(), "-mark"))
	b.ResetTimer()
	for range b.N {
		if err := c.MarkDone(b.Context(), keys, nil); err != nil {
			b.Fatal(err)
		}
	}
	reportKeys(b)
}

func benchKeys(topic string) []event.Key {
	k := make([]event.Key, benchBatch)
	for i := range k {
		k[i] = event.Key{Topic: "bench-" + topic, EventID: fmt.Sprintf("e-%06d", i)}
	}
	return k
}

func reportKeys(b *testing.B) {
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "keys/s")
}
