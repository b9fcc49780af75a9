package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	claimredis "github.com/event-aggregator/event-aggregator/pkg/claim/redis"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/store/postgres"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// The consumer feeding the real processing core with the distributed mode's
// own store and claimer (Postgres on a fresh database, Redis under a key
// prefix of its own): offsets fenced by the store itself, duplicates counted,
// a poison-only batch recorded with no events, every stored event marked
// done in Redis.
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

		st, err := postgres.Open(ctx, testdeps.NewPostgresDB(t), 4)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		rdb, err := claimredis.NewClient(testdeps.RedisURL(t))
		if err != nil {
			t.Fatal(err)
		}
		defer rdb.Close()
		var nonce [6]byte
		_, _ = rand.Read(nonce[:])
		prefix := "ea:kafkatest:" + hex.EncodeToString(nonce[:]) + ":"
		claimer := claimredis.New(rdb, "w-1", time.Minute, time.Hour, claimredis.WithKeyPrefix(prefix))

		proc := process.New(claimer, st, testLog(t), nil)
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
		if rows, err := st.Rows(ctx); err != nil || rows != 400 {
			t.Fatalf("rows %d, %v; want 400", rows, err)
		}
		// The claimer took part: every stored key is marked done, with the
		// position of the batch that stored it ("done:<next>:…").
		done := 0
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			if v, err := rdb.Get(ctx, iter.Val()).Result(); err == nil && strings.HasPrefix(v, "done:") {
				done++
			}
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		if done != 400 {
			t.Fatalf("%d keys marked done in Redis, want 400", done)
		}
	})
}
