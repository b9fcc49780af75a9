package kafka

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/store/sqlite"
)

// The consumer feeding the real processing core and a real store: offsets
// fenced by the store itself, duplicates counted, a poison-only batch
// recorded with no events.
func TestConsumerWithProcessorAndStore(t *testing.T) {
	onKafka(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 3)
		p := newProducer(t, c, topic)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var evs []event.Event
		for i := range 500 {
			evs = append(evs, testEvent("orders", "s-"+strconv.Itoa(i%400), i)) // 100 copies
		}
		if err := p.Publish(ctx, evs); err != nil {
			t.Fatal(err)
		}
		raw := &kafka.Writer{Addr: kafka.TCP(c.brokers...), Topic: topic, RequiredAcks: kafka.RequireAll,
			BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
		defer raw.Close()
		if err := raw.WriteMessages(ctx, kafka.Message{Value: []byte("poison")}); err != nil {
			t.Fatal(err)
		}

		st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "events.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		proc := process.New(nil, st, testLog(t), nil)
		ends := highWatermarks(t, c, topic)
		stop := startConsumer(t, consumerConfig(t, c, topic, c.topic(t, 1)), st, ProcessorHandler(proc))
		waitFor(t, 60*time.Second, "the store's offsets at the end", func() bool {
			offs, err := st.Offsets(ctx, topic)
			if err != nil {
				return false
			}
			for part, end := range ends {
				if end > 0 && offs[part] != end {
					return false
				}
			}
			return true
		})
		stop()

		counts, err := st.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(counts) != 1 || counts[0].Received != 500 || counts[0].Unique != 400 || counts[0].Duplicates != 100 {
			t.Fatalf("counts %+v, want received 500 = 400 unique + 100 duplicates", counts)
		}
	})
}
