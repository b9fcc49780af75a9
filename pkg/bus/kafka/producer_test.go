package kafka

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/ingest"
)

var _ ingest.Publisher = (*Producer)(nil)

func TestProducerWriterSettings(t *testing.T) {
	p, err := NewProducer(ProducerConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "events"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if acks := p.cl.OptValue(kgo.RequiredAcks); acks != kgo.AllISRAcks() {
		t.Errorf("RequiredAcks = %v, want all in-sync replicas", acks)
	}
	if off := p.cl.OptValue(kgo.DisableIdempotentWrite); off != false {
		t.Errorf("idempotent writes disabled (%v): a retried request could store a record twice in the log", off)
	}
	if linger := p.cl.OptValue(kgo.ProducerLinger); linger != time.Duration(0) {
		t.Errorf("ProducerLinger = %v, want 0: a synchronous Publish would wait for it", linger)
	}
	if topic := p.cl.OptValue(kgo.DefaultProduceTopic); topic != "events" {
		t.Errorf("DefaultProduceTopic = %v, want events", topic)
	}
}

func TestProducerSameKeySamePartition(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 6)
		p := newProducer(t, c, topic)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		const keys, copies = 50, 3
		for round := range copies {
			evs := make([]event.Event, keys)
			for k := range keys {
				evs[k] = testEvent("orders", "e-"+strconv.Itoa(k), round)
			}
			if err := p.Publish(ctx, evs); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
		partitionOf := map[string]int{}
		seqs := map[string][]string{}
		total := 0
		for part, recs := range readAll(t, c, topic) {
			for _, m := range recs {
				e, err := Decode(m.Value)
				if err != nil {
					t.Fatalf("record %d/%d does not decode: %v", part, m.Offset, err)
				}
				if string(m.Key) != e.Topic+"/"+e.EventID {
					t.Errorf("key %q for event %s/%s", m.Key, e.Topic, e.EventID)
				}
				if prev, ok := partitionOf[e.EventID]; ok && prev != part {
					t.Errorf("event %s in partitions %d and %d", e.EventID, prev, part)
				}
				partitionOf[e.EventID] = part
				seqs[e.EventID] = append(seqs[e.EventID], string(e.Payload))
				total++
			}
		}
		if total != keys*copies {
			t.Fatalf("read %d records, want %d", total, keys*copies)
		}
		if used := countDistinct(partitionOf); used < 3 {
			t.Errorf("%d keys landed on only %d partitions", keys, used)
		}
		for id, s := range seqs {
			if want := `[{"seq":0} {"seq":1} {"seq":2}]`; sprint(s) != want {
				t.Errorf("copies of %s out of order: %v", id, s)
			}
		}
	})
}

func TestProducerConcurrentPublish(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 12)
		p := newProducer(t, c, topic)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		const calls = 1000
		errs := make(chan error, calls)
		var wg sync.WaitGroup
		for i := range calls {
			wg.Go(func() {
				errs <- p.Publish(ctx, []event.Event{testEvent("orders", "c-"+strconv.Itoa(i), i)})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
		seen := map[string]int{}
		for _, recs := range readAll(t, c, topic) {
			for _, m := range recs {
				e, err := Decode(m.Value)
				if err != nil {
					t.Fatal(err)
				}
				seen[e.EventID]++
			}
		}
		if len(seen) != calls {
			t.Fatalf("%d distinct events in the topic, want %d", len(seen), calls)
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("event %s written %d times", id, n)
			}
		}
	})
}

func TestProducerHeaders(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		type ctxKey struct{}
		p, err := NewProducer(ProducerConfig{Brokers: c.brokers, Topic: topic,
			Headers: func(ctx context.Context) []kafka.Header {
				return []kafka.Header{{Key: "traceparent", Value: []byte(ctx.Value(ctxKey{}).(string))}}
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, "00-abc-def-01"), 30*time.Second)
		defer cancel()
		if err := p.Publish(ctx, []event.Event{testEvent("orders", "h-1", 1)}); err != nil {
			t.Fatal(err)
		}
		recs := readAll(t, c, topic)[0]
		if len(recs) != 1 || len(recs[0].Headers) != 1 || string(recs[0].Headers[0].Value) != "00-abc-def-01" {
			t.Fatalf("records %+v, want one with the traceparent header", recs)
		}
	})
}

func TestProducerUnreachableBrokerFails(t *testing.T) {
	p, err := NewProducer(ProducerConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "events"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := p.Publish(ctx, []event.Event{testEvent("orders", "x", 1)}); err == nil {
		t.Fatal("publish to an unreachable broker succeeded")
	}
}

func countDistinct(m map[string]int) int {
	s := map[int]bool{}
	for _, v := range m {
		s[v] = true
	}
	return len(s)
}

func sprint(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out + "]"
}
