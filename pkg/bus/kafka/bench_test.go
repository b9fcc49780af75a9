package kafka

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// BenchmarkProduce measures acknowledged (acks=all) publishing against the
// real broker: 8 concurrent callers, 1,000 events per Publish, a 12-partition
// topic, as the ingest service does under load. One op is one Publish call.
func BenchmarkProduce(b *testing.B) {
	const perCall, concurrency = 1000, 8
	brokers := testdeps.KafkaBrokers(b)
	topic := testdeps.NewKafkaTopic(b, 12)
	p, err := NewProducer(ProducerConfig{Brokers: brokers, Topic: topic})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()

	calls := make([][]event.Event, concurrency)
	for w := range calls {
		calls[w] = make([]event.Event, perCall)
		for i := range perCall {
			e := testEvent("orders", "", i)
			e.Payload = []byte(`{"order_id":` + strconv.Itoa(i) + `,"amount":42.5,"currency":"EUR","items":3}`)
			calls[w][i] = e
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	// Warm up connections and metadata outside the measurement.
	if err := p.Publish(ctx, calls[0][:1]); err != nil {
		b.Fatal(err)
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range concurrency {
		wg.Go(func() {
			evs := calls[w]
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				for i := range evs {
					evs[i].EventID = "w" + strconv.Itoa(w) + "-" + strconv.FormatInt(n, 10) + "-" + strconv.Itoa(i)
				}
				if err := p.Publish(ctx, evs); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*perCall)/elapsed.Seconds(), "events/s")
}
