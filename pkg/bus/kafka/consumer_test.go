package kafka

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// lagObserver remembers the last lag of each partition.
type lagObserver struct {
	mu   sync.Mutex
	lag  map[int]int64
	dead int
}

func (o *lagObserver) Lag(_ string, p int, lag int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lag == nil {
		o.lag = map[int]int64{}
	}
	o.lag[p] = lag
}
func (o *lagObserver) Revoked(string, int) {}
func (o *lagObserver) DeadLettered(_ string, _ int, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dead += n
}

func TestConsumerHandlesEachRecordOnceInOrder(t *testing.T) {
	onKafka(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 4)
		p := newProducer(t, c, topic)
		ids := publish(t, p, topic, "a", 2000, 250)

		s := newStore()
		obs := &lagObserver{}
		cfg := consumerConfig(t, c, topic, topic+".dlq")
		cfg.Observer = obs
		startConsumer(t, cfg, s, s.handler("c1"))
		ends := highWatermarks(t, c, topic)
		waitFor(t, 60*time.Second, "every record handled", func() bool { return s.reached(ends) })

		checkChains(t, s, readAll(t, c, topic), map[int]int64{})
		if n := s.count(); n != len(ids) {
			t.Errorf("handled %d events, want %d", n, len(ids))
		}
		for _, bs := range s.committed() {
			for _, b := range bs {
				if len(b.ids) > cfg.BatchSize {
					t.Errorf("batch of %d records, more than BatchSize %d", len(b.ids), cfg.BatchSize)
				}
			}
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		for part, end := range ends {
			if lag, ok := obs.lag[part]; end > 0 && (!ok || lag != 0) {
				t.Errorf("partition %d: last lag %d (reported %v), want 0", part, lag, ok)
			}
		}
	})
}

func TestConsumerResumesFromStoredOffsets(t *testing.T) {
	onKafka(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 3)
		p := newProducer(t, c, topic)
		publish(t, p, topic, "r", 300, 100)
		ends := highWatermarks(t, c, topic)

		// The store already holds part of partitions 0 and 1; partition 2
		// was never consumed and starts at its first offset.
		start := map[int]int64{0: ends[0] / 2, 1: ends[1] - 1}
		s := newStore()
		for part, off := range start {
			s.next[part] = off
		}
		startConsumer(t, consumerConfig(t, c, topic, topic+".dlq"), s, s.handler("c1"))
		waitFor(t, 60*time.Second, "every record handled", func() bool { return s.reached(ends) })
		checkChains(t, s, readAll(t, c, topic), start)
		for part, off := range start {
			if b := s.committed()[part]; len(b) == 0 || b[0].off.From != off {
				t.Errorf("partition %d: first batch %+v, want From %d", part, b, off)
			}
		}
	})
}

// A store with no offsets behind a group that committed some (a fresh or
// reset database): the group's offsets would skip what Kafka still holds,
// so every retained record is consumed again.
func TestConsumerFreshStoreReadsRetainedRecords(t *testing.T) {
	onKafka(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 2)
		p := newProducer(t, c, topic)
		publish(t, p, topic, "g1", 100, 100)
		first := highWatermarks(t, c, topic)
		cfg := consumerConfig(t, c, topic, topic+".dlq")

		s1 := newStore()
		stop := startConsumer(t, cfg, s1, s1.handler("c1"))
		waitFor(t, 60*time.Second, "first round handled", func() bool { return s1.reached(first) })
		stop() // commits the group offsets and leaves

		publish(t, p, topic, "g2", 100, 100)
		ends := highWatermarks(t, c, topic)
		s2 := newStore()
		startConsumer(t, cfg, s2, s2.handler("c2"))
		waitFor(t, 60*time.Second, "every record handled", func() bool { return s2.reached(ends) })
		checkChains(t, s2, readAll(t, c, topic), map[int]int64{})
	})
}

// The store goes back in time under a running consumer: restored to an
// earlier state, then reset to nothing. Each time the consumer's next batch
// is fenced, and it consumes again from where the store is.
func TestConsumerStoreGoesBackUnderIt(t *testing.T) {
	onKafka(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 2)
		p := newProducer(t, c, topic)
		cfg := consumerConfig(t, c, topic, topic+".dlq")
		s := newStore()
		startConsumer(t, cfg, s, s.handler("c1"))

		round := func(name string) map[int]int64 {
			t.Helper()
			publish(t, p, topic, name, 100, 100)
			ends := highWatermarks(t, c, topic)
			waitFor(t, 60*time.Second, name+" handled", func() bool { return s.reached(ends) })
			return ends
		}
		round("b1")
		backup := s.snapshot()
		round("b2")
		s.restore(backup)
		round("b3")
		checkChains(t, s, readAll(t, c, topic), map[int]int64{})

		s.restore(&fencingStore{next: map[int]int64{}})
		round("b4")
		checkChains(t, s, readAll(t, c, topic), map[int]int64{})
	})
}

func TestConsumerDeadLettersPoisonRecords(t *testing.T) {
	onKafka(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		dlq := c.topic(t, 1)
		p := newProducer(t, c, topic)
		publish(t, p, topic, "ok", 2, 2)
		raw := &kafka.Writer{Addr: kafka.TCP(c.brokers...), Topic: topic, RequiredAcks: kafka.RequireAll,
			BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
		defer raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := raw.WriteMessages(ctx,
			kafka.Message{Key: []byte("x"), Value: []byte("not json")},
			kafka.Message{Key: []byte("y"), Value: []byte(`{"topic":"orders","event_id":"no-ts","source":"s"}`)},
		); err != nil {
			t.Fatal(err)
		}
		publish(t, p, topic, "after", 2, 2)

		s := newStore()
		obs := &lagObserver{}
		cfg := consumerConfig(t, c, topic, dlq)
		cfg.Observer = obs
		startConsumer(t, cfg, s, s.handler("c1"))
		waitFor(t, 60*time.Second, "records past the poison handled", func() bool { return s.reached(map[int]int64{0: 6}) })

		// A batch of nothing but poison still moves the partition.
		if err := raw.WriteMessages(ctx, kafka.Message{Value: []byte("[]")}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "a poison-only batch handled", func() bool { return s.reached(map[int]int64{0: 7}) })
		checkChains(t, s, readAll(t, c, topic), map[int]int64{})
		if n := s.count(); n != 4 {
			t.Errorf("handled %d events, want the 4 valid ones", n)
		}

		dead := readAll(t, c, dlq)[0]
		if len(dead) != 3 {
			t.Fatalf("%d records in the DLQ, want 3", len(dead))
		}
		for i, wantOff := range []string{"2", "3", "6"} {
			m := dead[i]
			if got := headerValue(m.Headers, HeaderDLQOffset); got != wantOff {
				t.Errorf("DLQ record %d: offset header %q, want %s", i, got, wantOff)
			}
			if headerValue(m.Headers, HeaderDLQTopic) != topic || headerValue(m.Headers, HeaderDLQPartition) != "0" {
				t.Errorf("DLQ record %d: origin headers %+v", i, m.Headers)
			}
			if headerValue(m.Headers, HeaderDLQReason) == "" {
				t.Errorf("DLQ record %d has no reason", i)
			}
		}
		if r := headerValue(dead[1].Headers, HeaderDLQReason); !strings.Contains(r, "timestamp") {
			t.Errorf("reason %q does not name the missing timestamp", r)
		}
		if string(dead[0].Value) != "not json" || string(dead[0].Key) != "x" {
			t.Errorf("DLQ record changed the original: %q/%q", dead[0].Key, dead[0].Value)
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if obs.dead != 3 {
			t.Errorf("observer counted %d dead letters, want 3", obs.dead)
		}
	})
}

func TestConsumerRetriesFailedBatch(t *testing.T) {
	onKafka(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		p := newProducer(t, c, topic)
		publish(t, p, topic, "f", 50, 50)
		s := newStore()
		var failedOff process.Offset
		s.fail = func(off process.Offset, attempt int) error {
			if off.From == 0 && attempt <= 3 {
				failedOff = off
				return errTransient
			}
			return nil
		}
		startConsumer(t, consumerConfig(t, c, topic, topic+".dlq"), s, s.handler("c1"))
		waitFor(t, 60*time.Second, "every record handled", func() bool { return s.reached(map[int]int64{0: 50}) })
		checkChains(t, s, readAll(t, c, topic), map[int]int64{})

		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, a := range s.attempts {
			if a == failedOff {
				n++
			}
		}
		if n != 4 {
			t.Errorf("batch %+v tried %d times, want 3 failures then a success", failedOff, n)
		}
		if s.attempts[0] != failedOff || s.batches[0].off != failedOff {
			t.Errorf("first attempt %+v, first commit %+v: the failed batch was not retried as it was",
				s.attempts[0], s.batches[0].off)
		}
	})
}

// A stale writer moved the store ahead while this consumer owns the
// partition: it is fenced, checks with the group that it still owns the
// partition, and resumes from the stored offset.
func TestConsumerResyncsWhenFencedAsOwner(t *testing.T) {
	onKafka(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		p := newProducer(t, c, topic)
		publish(t, p, topic, "z", 40, 10)
		s := newStore()
		var once sync.Once
		s.fail = func(off process.Offset, attempt int) error {
			once.Do(func() { s.next[0] = 30 }) // the stale writer's commit, seen by the first batch
			return nil
		}
		startConsumer(t, consumerConfig(t, c, topic, topic+".dlq"), s, s.handler("c1"))
		waitFor(t, 60*time.Second, "the rest handled", func() bool { return s.reached(map[int]int64{0: 40}) })
		b := s.committed()[0]
		if len(b) == 0 || b[0].off.From != 30 {
			t.Fatalf("committed %+v, want a resume at 30", b)
		}
		if s.fenced != 1 {
			t.Errorf("%d fenced attempts, want 1", s.fenced)
		}
	})
}

func TestConsumerGroupRebalance(t *testing.T) {
	onKafka(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 6)
		p := newProducer(t, c, topic)
		s := newStore()
		s.delay = 2 * time.Millisecond // batches in flight while the group rebalances
		cfg := consumerConfig(t, c, topic, topic+".dlq")
		cfg.BatchSize = 20

		// Produce all along, so every rebalance cuts through a live stream.
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		var produced sync.WaitGroup
		stopProducing := make(chan struct{})
		produced.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopProducing:
					return
				case <-time.After(10 * time.Millisecond):
				}
				evs := make([]event.Event, 20)
				for j := range evs {
					evs[j] = testEvent("orders", "b"+strconv.Itoa(i)+"-"+strconv.Itoa(j), j)
				}
				if err := p.Publish(ctx, evs); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		})
		startConsumer(t, cfg, s, s.handler("c1"))
		startConsumer(t, cfg, s, s.handler("c2"))
		waitFor(t, 60*time.Second, "both consumers handling", func() bool {
			return handledBy(s, "c1") > 0 && handledBy(s, "c2") > 0
		})
		startConsumer(t, cfg, s, s.handler("c3"))
		waitFor(t, 60*time.Second, "the third consumer handling", func() bool { return handledBy(s, "c3") > 0 })
		time.Sleep(500 * time.Millisecond)
		close(stopProducing)
		produced.Wait()
		if ctx.Err() != nil {
			t.Fatal("test ran out of time")
		}
		ends := highWatermarks(t, c, topic)
		waitFor(t, 60*time.Second, "every record handled", func() bool { return s.reached(ends) })

		records := readAll(t, c, topic)
		checkChains(t, s, records, map[int]int64{})
		total := 0
		for _, recs := range records {
			total += len(recs)
		}
		counts := uniqueIDs(s)
		if len(counts) != total {
			t.Errorf("%d distinct events committed, %d produced", len(counts), total)
		}
		for id, n := range counts {
			if n != 1 {
				t.Errorf("event %s committed %d times", id, n)
			}
		}
		owners := map[int]map[string]bool{}
		for part, bs := range s.committed() {
			owners[part] = map[string]bool{}
			for _, b := range bs {
				owners[part][b.consumer] = true
			}
		}
		t.Logf("%d records over %d partitions; owners per partition %v; fenced attempts %d",
			total, len(records), owners, s.fenced)
	})
}

func handledBy(s *fencingStore, name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range s.batches {
		if b.consumer == name {
			n++
		}
	}
	return n
}

func TestProcessorHandlerPassesPartitionAsShard(t *testing.T) {
	var got struct {
		shard int
		off   *process.Offset
		n     int
	}
	// A concrete type, so that the worker uses it rather than its own.
	var h ProcessorAdapter = ProcessorHandler(processorFunc(func(_ context.Context, evs []event.Event, shard int, off *process.Offset) (process.Result, error) {
		got.shard, got.off, got.n = shard, off, len(evs)
		return process.Result{}, process.ErrFenced
	}))
	off := process.Offset{Topic: "events", Partition: 7, From: 10, Next: 12}
	err := h.HandleBatch(context.Background(), 7, []event.Event{testEvent("t", "a", 1), testEvent("t", "b", 2)}, off)
	if !errors.Is(err, process.ErrFenced) {
		t.Errorf("err = %v, want ErrFenced passed through", err)
	}
	if got.shard != 7 || got.off == nil || *got.off != off || got.n != 2 {
		t.Errorf("Process got shard %d, offset %+v, %d events", got.shard, got.off, got.n)
	}
}

var _ Processor = (*process.Processor)(nil)

type processorFunc func(ctx context.Context, events []event.Event, shard int, off *process.Offset) (process.Result, error)

func (f processorFunc) Process(ctx context.Context, events []event.Event, shard int, off *process.Offset) (process.Result, error) {
	return f(ctx, events, shard, off)
}
