package kafka

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
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

// BenchmarkConsume measures the consumer alone (decode, batch, offsets)
// against the real broker: one member reads a 12-partition topic into a
// handler that only records offsets. One op is one event.
func BenchmarkConsume(b *testing.B) {
	brokers := testdeps.KafkaBrokers(b)
	topic := testdeps.NewKafkaTopic(b, 12)
	p, err := NewProducer(ProducerConfig{Brokers: brokers, Topic: topic})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	evs := make([]event.Event, 0, 1000)
	for i := 0; i < b.N; i += 1000 {
		evs = evs[:0]
		for j := i; j < min(i+1000, b.N); j++ {
			e := testEvent("orders", "c-"+strconv.Itoa(j), j)
			evs = append(evs, e)
		}
		if err := p.Publish(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	p.Close()

	var handled atomic.Int64
	s := newStore()
	h := HandlerFunc(func(ctx context.Context, part int, evs []event.Event, off process.Offset) error {
		handled.Add(int64(len(evs)))
		return s.handler("b").HandleBatch(ctx, part, nil, off)
	})
	c, err := NewConsumer(ConsumerConfig{Brokers: brokers, Topic: topic, DLQTopic: topic + ".dlq",
		Group: topic + "-group", Log: slog.New(slog.DiscardHandler)}, s, h)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	for handled.Load() < int64(b.N) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	<-done
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
}
