package kafka

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// BenchmarkProduceSingle measures the ingest path of single-event requests
// against the real broker: 64 concurrent callers, one event per Publish, a
// 12-partition topic. It compares acks=all (what the producer always uses)
// with acks=1, to measure what the stronger acknowledgement costs, and the
// batch timeout (linger). One op is one Publish call; it reports events/s and
// the p50/p99 of a call.
func BenchmarkProduceSingle(b *testing.B) {
	brokers := testdeps.KafkaBrokers(b)
	topic := testdeps.NewKafkaTopic(b, 12)
	for _, c := range []struct {
		name    string
		extra   []kgo.Opt
		timeout time.Duration
	}{
		{"acks=all/batch-timeout=0", nil, 0},
		// Measured only here: the producer never drops acks=all, and
		// acks=1 cannot be idempotent, so idempotence alone is measured too.
		{"acks=all/not-idempotent/batch-timeout=0", []kgo.Opt{kgo.DisableIdempotentWrite()}, 0},
		{"acks=1/not-idempotent/batch-timeout=0", []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()}, 0},
		{"acks=all/batch-timeout=500us", nil, 500 * time.Microsecond},
		{"acks=all/batch-timeout=2ms", nil, 2 * time.Millisecond},
	} {
		b.Run(c.name, func(b *testing.B) {
			extra := c.extra
			p, err := newProducerWith(ProducerConfig{Brokers: brokers, Topic: topic, BatchTimeout: c.timeout}, extra...)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			benchSingle(b, p, 64)
		})
	}
}

func benchSingle(b *testing.B, p *Producer, concurrency int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := p.Publish(ctx, []event.Event{testEvent("orders", "warm-up", 0)}); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	lat := make([][]time.Duration, concurrency)
	b.ResetTimer()
	start := time.Now()
	for w := range concurrency {
		wg.Go(func() {
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				e := testEvent("orders", "s"+strconv.Itoa(w)+"-"+strconv.FormatInt(n, 10), int(n))
				t0 := time.Now()
				if err := p.Publish(ctx, []event.Event{e}); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Sorted(slices.Values(slices.Concat(lat...)))
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
}
