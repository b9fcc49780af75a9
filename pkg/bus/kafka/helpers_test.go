package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// cluster is a Kafka the tests run against: the real broker, or kfake for
// fast runs of the same scenarios.
type cluster struct {
	name    string
	brokers []string
	topic   func(t *testing.T, partitions int) string
}

func realCluster(t *testing.T) cluster {
	return cluster{name: "kafka", brokers: testdeps.KafkaBrokers(t), topic: func(t *testing.T, n int) string {
		return testdeps.NewKafkaTopic(t, n)
	}}
}

func fakeCluster(t *testing.T) cluster {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	n := 0
	return cluster{name: "kfake", brokers: brokers, topic: func(t *testing.T, parts int) string {
		n++
		name := "t" + strconv.Itoa(n)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := EnsureTopics(ctx, brokers, TopicSpec{Name: name, Partitions: parts}); err != nil {
			t.Fatalf("create topic: %v", err)
		}
		return name
	}}
}

// onKafka runs a scenario against the real broker only. kfake cannot host
// kafka-go's consumer group: it answers a JoinGroup below v4 with an empty
// member ID, so the SyncGroup that follows always fails.
func onKafka(t *testing.T, fn func(t *testing.T, c cluster)) { fn(t, realCluster(t)) }

// onBoth runs a scenario against the real broker (which must be running)
// and against kfake.
func onBoth(t *testing.T, fn func(t *testing.T, c cluster)) {
	t.Run("kafka", func(t *testing.T) { fn(t, realCluster(t)) })
	t.Run("kfake", func(t *testing.T) { fn(t, fakeCluster(t)) })
}

func testLog(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("AGGREGATOR_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

func testEvent(topic, id string, seq int) event.Event {
	return event.Event{
		Topic: topic, EventID: id, Source: "test",
		Timestamp: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
		Payload:   []byte(`{"seq":` + strconv.Itoa(seq) + `}`),
	}
}

// batch is one committed HandleBatch call.
type batch struct {
	consumer string
	off      process.Offset
	ids      []string
}

// fencingStore is an OffsetStore and Handler that keeps offsets as the real
// store does: a batch whose From is not the stored next is fenced.
type fencingStore struct {
	mu       sync.Mutex
	next     map[int]int64
	batches  []batch
	attempts []process.Offset // every call, committed or not
	fenced   int
	fail     func(off process.Offset, attempt int) error // injected failures
	delay    time.Duration
}

func newStore() *fencingStore { return &fencingStore{next: map[int]int64{}} }

func (s *fencingStore) Offsets(_ context.Context, topic string) (map[int]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]int64, len(s.next))
	for p, n := range s.next {
		out[p] = n
	}
	return out, nil
}

// handler returns the store's Handler as one named consumer.
func (s *fencingStore) handler(name string) Handler { return storeHandler{s, name} }

type storeHandler struct {
	s    *fencingStore
	name string
}

func (h storeHandler) HandleBatch(ctx context.Context, partition int, events []event.Event, off process.Offset) error {
	s := h.s
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if partition != off.Partition {
		return fmt.Errorf("partition %d but offset of partition %d", partition, off.Partition)
	}
	n := 0
	for _, a := range s.attempts {
		if a == off {
			n++
		}
	}
	s.attempts = append(s.attempts, off)
	if s.fail != nil {
		if err := s.fail(off, n+1); err != nil {
			return err
		}
	}
	if cur, ok := s.next[partition]; (ok && cur != off.From) || (!ok && !off.First) {
		s.fenced++
		return process.ErrFenced
	}
	s.next[partition] = off.Next
	ids := make([]string, len(events))
	for i := range events {
		ids[i] = events[i].EventID
	}
	s.batches = append(s.batches, batch{consumer: h.name, off: off, ids: ids})
	return nil
}

// snapshot copies the store's offsets and batches, as a backup would.
func (s *fencingStore) snapshot() *fencingStore {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := &fencingStore{next: map[int]int64{}, batches: slices.Clone(s.batches)}
	maps.Copy(cp.next, s.next)
	return cp
}

// restore puts the store back to a snapshot, losing what came after.
func (s *fencingStore) restore(from *fencingStore) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next = map[int]int64{}
	maps.Copy(s.next, from.next)
	s.batches = slices.Clone(from.batches)
}

// committed returns the committed batches of each partition in commit order.
func (s *fencingStore) committed() map[int][]batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int][]batch{}
	for _, b := range s.batches {
		out[b.off.Partition] = append(out[b.off.Partition], b)
	}
	return out
}

func (s *fencingStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range s.batches {
		n += len(b.ids)
	}
	return n
}

func (s *fencingStore) reached(ends map[int]int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, end := range ends {
		if end > 0 && s.next[p] != end {
			return false
		}
	}
	return true
}

// startConsumer runs a consumer until the returned stop is called (or the
// test ends); stop waits for Run to return.
func startConsumer(t *testing.T, cfg ConsumerConfig, offsets OffsetStore, h Handler) (stop func()) {
	t.Helper()
	c, err := NewConsumer(cfg, offsets, h)
	if err != nil {
		t.Fatalf("new consumer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("consumer run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("consumer did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func consumerConfig(t *testing.T, c cluster, topic, dlq string) ConsumerConfig {
	return ConsumerConfig{
		Brokers: c.brokers, Topic: topic, DLQTopic: dlq,
		Group:     topic + "-group",
		BatchSize: 100, BatchLinger: 5 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		SessionTimeout: 6 * time.Second, HeartbeatInterval: 500 * time.Millisecond,
		RebalanceTimeout: 10 * time.Second,
		Log:              testLog(t),
	}
}

func newProducer(t *testing.T, c cluster, topic string) *Producer {
	t.Helper()
	p, err := NewProducer(ProducerConfig{Brokers: c.brokers, Topic: topic})
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// publish sends n events with ids prefix-0..n-1 in calls of per events.
func publish(t *testing.T, p *Producer, topic, prefix string, n, per int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ids []string
	for i := 0; i < n; i += per {
		var evs []event.Event
		for j := i; j < min(i+per, n); j++ {
			id := prefix + "-" + strconv.Itoa(j)
			evs = append(evs, testEvent("orders", id, j))
			ids = append(ids, id)
		}
		if err := p.Publish(ctx, evs); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	return ids
}

// readAll returns every record of topic, by partition in offset order.
func readAll(t *testing.T, c cluster, topic string) map[int][]kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends := highWatermarks(t, c, topic)
	out := map[int][]kafka.Message{}
	for p, end := range ends {
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: c.brokers, Topic: topic, Partition: p, MaxWait: 200 * time.Millisecond,
		})
		if err := r.SetOffset(kafka.FirstOffset); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read partition %d of %s: %v", p, topic, err)
			}
			out[p] = append(out[p], m)
			if m.Offset+1 >= end {
				break
			}
		}
		r.Close()
	}
	return out
}

// highWatermarks returns the end offset of each partition of topic.
func highWatermarks(t *testing.T, c cluster, topic string) map[int]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(c.brokers...), Transport: &kafka.Transport{MetadataTTL: 100 * time.Millisecond}}
	defer client.Transport.(*kafka.Transport).CloseIdleConnections()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("metadata of %s: %v %+v", topic, err, md)
	}
	req := map[string][]kafka.OffsetRequest{}
	for _, p := range md.Topics[0].Partitions {
		req[topic] = append(req[topic], kafka.LastOffsetOf(p.ID))
	}
	for {
		res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
		if err != nil {
			t.Fatalf("list offsets of %s: %v", topic, err)
		}
		out := map[int]int64{}
		var retry error
		for _, po := range res.Topics[topic] {
			var kerr kafka.Error
			switch {
			case errors.As(po.Error, &kerr) && kerr.Temporary():
				// A topic just created: its leader may not know it leads yet.
				retry = po.Error
			case po.Error != nil:
				t.Fatalf("list offsets of %s/%d: %v", topic, po.Partition, po.Error)
			}
			out[po.Partition] = po.LastOffset
		}
		if retry == nil {
			return out
		}
		select {
		case <-ctx.Done():
			t.Fatalf("list offsets of %s: %v", topic, retry)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkChains checks the committed batches of each partition: contiguous
// [From, Next) ranges from start to the end offset, and the events in the
// topic's offset order, each exactly once.
func checkChains(t *testing.T, s *fencingStore, records map[int][]kafka.Message, start map[int]int64) {
	t.Helper()
	got := s.committed()
	for p, recs := range records {
		want := []string{}
		for _, m := range recs {
			if m.Offset < start[p] {
				continue
			}
			e, err := Decode(m.Value)
			if err != nil {
				continue // poison
			}
			want = append(want, e.EventID)
		}
		var ids []string
		next := start[p]
		for _, b := range got[p] {
			if b.off.From != next {
				t.Errorf("partition %d: batch [%d, %d) does not start at %d", p, b.off.From, b.off.Next, next)
			}
			if b.off.Next <= b.off.From {
				t.Errorf("partition %d: empty range [%d, %d)", p, b.off.From, b.off.Next)
			}
			next = b.off.Next
			ids = append(ids, b.ids...)
		}
		if end := recs[len(recs)-1].Offset + 1; next != end {
			t.Errorf("partition %d: committed up to %d, want %d", p, next, end)
		}
		if fmt.Sprint(ids) != fmt.Sprint(want) {
			t.Errorf("partition %d: handled %d events %v…, want %d in offset order %v…",
				p, len(ids), head(ids), len(want), head(want))
		}
	}
	for p := range got {
		if _, ok := records[p]; !ok {
			t.Errorf("batches for partition %d that has no records", p)
		}
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// uniqueIDs counts how often each event id was committed.
func uniqueIDs(s *fencingStore) map[string]int {
	out := map[string]int{}
	for _, bs := range s.committed() {
		for _, b := range bs {
			for _, id := range b.ids {
				out[id]++
			}
		}
	}
	return out
}

func sortedKeys(m map[int][]kafka.Message) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}

var errTransient = errors.New("store unavailable (injected)")

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, partition int, events []event.Event, off process.Offset) error

func (f HandlerFunc) HandleBatch(ctx context.Context, partition int, events []event.Event, off process.Offset) error {
	return f(ctx, partition, events, off)
}

func itoa(i int) string { return strconv.Itoa(i) }
