package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// fakeGen stands in for a group generation: err is what the coordinator
// answers a commit.
type fakeGen struct {
	mu      sync.Mutex
	err     error
	commits []int64 // committed offsets of partition 0, in order
}

func (g *fakeGen) CommitOffsets(offs map[string]map[int]int64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return g.err
	}
	for _, ps := range offs {
		g.commits = append(g.commits, ps[0])
	}
	return nil
}

func (g *fakeGen) last() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.commits) == 0 {
		return -1
	}
	return g.commits[len(g.commits)-1]
}

// runPartition consumes partition 0 of topic without a group. done closes
// when the partition loop returns; cancel revokes it.
func runPartition(t *testing.T, c cluster, topic, dlq string, start int64, s *fencingStore, gen *fakeGen,
	mod func(*ConsumerConfig)) (done chan struct{}, cancel func()) {
	t.Helper()
	cfg := consumerConfig(t, c, topic, dlq)
	if mod != nil {
		mod(&cfg)
	}
	cons, err := NewConsumer(cfg, s, s.handler("p"))
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(c.brokers...), Topic: dlq, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
	if _, ok := s.next[0]; !ok && start >= 0 {
		s.next[0] = start // a partition starts at the store's offset
	}
	com := newCommitter(gen, topic, cons.log)
	p := newPartition(cons, 0, start, w, com, gen)
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() {
		defer close(done)
		p.run(ctx)
		com.close()
		w.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("partition loop did not stop within 20s")
		}
	})
	return done, cancel
}

func TestPartitionBatchesInOffsetOrder(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		p := newProducer(t, c, topic)
		publish(t, p, topic, "p", 1000, 200)
		s, gen, obs := newStore(), &fakeGen{}, &lagObserver{}
		runPartition(t, c, topic, topic+".dlq", kafka.FirstOffset, s, gen, func(cfg *ConsumerConfig) {
			cfg.BatchSize = 64
			cfg.Observer = obs
		})
		waitFor(t, 30*time.Second, "every record handled", func() bool { return s.reached(map[int]int64{0: 1000}) })
		checkChains(t, s, readAll(t, c, topic), map[int]int64{})
		for _, b := range s.committed()[0] {
			if len(b.ids) > 64 {
				t.Fatalf("batch of %d records, BatchSize is 64", len(b.ids))
			}
		}
		waitFor(t, 5*time.Second, "the group offset committed", func() bool { return gen.last() == 1000 })
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if obs.lag[0] != 0 {
			t.Errorf("last lag %d, want 0", obs.lag[0])
		}
	})
}

func TestPartitionPoisonGoesToDLQ(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic, dlq := c.topic(t, 1), c.topic(t, 1)
		raw := &kafka.Writer{Addr: kafka.TCP(c.brokers...), Topic: topic, RequiredAcks: kafka.RequireAll,
			BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
		defer raw.Close()
		good := testEvent("orders", "good", 1)
		v, _ := Encode(&good)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := raw.WriteMessages(ctx,
			kafka.Message{Value: []byte(`{"topic":1}`)},
			kafka.Message{Value: v},
		); err != nil {
			t.Fatal(err)
		}
		s := newStore()
		runPartition(t, c, topic, dlq, kafka.FirstOffset, s, &fakeGen{}, nil)
		waitFor(t, 30*time.Second, "both records handled", func() bool { return s.reached(map[int]int64{0: 2}) })
		if b := s.committed()[0]; len(b) != 1 || len(b[0].ids) != 1 || b[0].off != (process.Offset{Topic: topic, From: 0, Next: 2, First: true}) {
			t.Fatalf("committed %+v, want one batch [0, 2) with the good event", b)
		}
		dead := readAll(t, c, dlq)[0]
		if len(dead) != 1 || headerValue(dead[0].Headers, HeaderDLQOffset) != "0" ||
			!strings.Contains(headerValue(dead[0].Headers, HeaderDLQReason), "topic") {
			t.Fatalf("DLQ %+v, want the record of offset 0 with a reason naming the topic", dead)
		}
	})
}

// Fenced, and the coordinator refuses this member's commit: another
// consumer owns the partition, so this one stops without handling more.
func TestPartitionStopsWhenFencedByOwner(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		publish(t, newProducer(t, c, topic), topic, "s", 20, 20)
		s := newStore()
		gen := &fakeGen{err: kafka.IllegalGeneration}
		done, _ := runPartition(t, c, topic, topic+".dlq", 0, s, gen, nil)
		s.mu.Lock()
		s.next[0] = 15 // the owner's commit, made after this consumer read its start
		s.mu.Unlock()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("the fenced partition kept running")
		}
		if s.fenced != 1 || len(s.batches) != 0 {
			t.Fatalf("fenced %d times, committed %d batches: want 1 and 0", s.fenced, len(s.batches))
		}
	})
}

// Revoked while a batch is being handled: the batch commits, then the
// loop stops without starting another.
func TestPartitionRevokeFinishesBatchInFlight(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		publish(t, newProducer(t, c, topic), topic, "v", 100, 100)
		s := newStore()
		started := make(chan struct{})
		var once sync.Once
		s.fail = func(process.Offset, int) error {
			once.Do(func() { close(started) })
			return nil
		}
		s.delay = 300 * time.Millisecond
		done, cancel := runPartition(t, c, topic, topic+".dlq", 0, s, &fakeGen{}, func(cfg *ConsumerConfig) {
			cfg.BatchSize = 10
		})
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("no batch handled")
		}
		// The handler sleeps before it takes the lock: started closes on
		// the call after the sleep, so revoke during the next one.
		time.Sleep(100 * time.Millisecond)
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("revoked partition did not stop")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.attempts) != len(s.batches) {
			t.Fatalf("%d attempts, %d commits: a batch in flight was dropped", len(s.attempts), len(s.batches))
		}
		if len(s.batches) < 2 || len(s.batches) > 3 {
			t.Fatalf("%d batches committed, want the first and the one in flight", len(s.batches))
		}
	})
}

func TestPartitionRetriesUntilRevoked(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		publish(t, newProducer(t, c, topic), topic, "u", 10, 10)
		s := newStore()
		s.fail = func(process.Offset, int) error { return errTransient }
		done, cancel := runPartition(t, c, topic, topic+".dlq", 0, s, &fakeGen{}, nil)
		waitFor(t, 30*time.Second, "several attempts", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.attempts) >= 5
		})
		cancel()
		<-done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, a := range s.attempts {
			if a != s.attempts[0] {
				t.Fatalf("attempt %+v after %+v: a failing batch was skipped", a, s.attempts[0])
			}
		}
		if len(s.batches) != 0 {
			t.Fatalf("committed %+v", s.batches)
		}
	})
}

// The store path is not the only Handler: a slice of events must arrive
// intact even when the batch is reused by the next fetch.
func TestPartitionEventsSurviveNextFetch(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		publish(t, newProducer(t, c, topic), topic, "k", 300, 100)
		var mu sync.Mutex
		var kept [][]event.Event
		s := newStore()
		h := HandlerFunc(func(ctx context.Context, part int, evs []event.Event, off process.Offset) error {
			mu.Lock()
			kept = append(kept, evs)
			mu.Unlock()
			return s.handler("k").HandleBatch(ctx, part, evs, off)
		})
		cfg := consumerConfig(t, c, topic, topic+".dlq")
		cfg.BatchSize = 50
		cons, err := NewConsumer(cfg, s, h)
		if err != nil {
			t.Fatal(err)
		}
		com := newCommitter(&fakeGen{}, topic, cons.log)
		p := newPartition(cons, 0, kafka.FirstOffset, nil, com, &fakeGen{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); p.run(ctx); com.close() }()
		waitFor(t, 30*time.Second, "every record handled", func() bool { return s.reached(map[int]int64{0: 300}) })
		cancel()
		<-done
		n := 0
		for _, evs := range kept {
			for _, e := range evs {
				if e.EventID != "k-"+itoa(n) {
					t.Fatalf("event %d is %s", n, e.EventID)
				}
				n++
			}
		}
	})
}

// The store expects an offset the log does not have yet: the partition
// waits for it, never skipping ahead or back.
func TestPartitionWaitsPastEndOfLog(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		p := newProducer(t, c, topic)
		s := newStore()
		s.next[0] = 5
		ends := &endsSeen{}
		runPartition(t, c, topic, topic+".dlq", 5, s, &fakeGen{}, func(cfg *ConsumerConfig) {
			cfg.RetryMax = 100 * time.Millisecond
			cfg.Log = slog.New(ends)
		})
		publish(t, p, topic, "w1", 3, 3)
		// The partition has seen the log end at 3, short of 5, and chosen to
		// wait: whatever it would skip to, it has had its chance.
		waitFor(t, 30*time.Second, "the partition to see the log end at 3", func() bool { return ends.saw(3) })
		if n := len(s.committed()[0]); n != 0 {
			t.Fatalf("%d batches handled before the log reached the stored offset", n)
		}
		publish(t, p, topic, "w2", 7, 7)
		waitFor(t, 30*time.Second, "the records from 5 on", func() bool { return s.reached(map[int]int64{0: 10}) })
		checkChains(t, s, readAll(t, c, topic), map[int]int64{0: 5})
	})
}

// Records deleted (retention) before they were consumed: the partition
// resumes at the log's first offset and the store's chain goes on.
func TestPartitionResumesAfterExpiredRecords(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		publish(t, newProducer(t, c, topic), topic, "x", 10, 10)
		deleteRecordsBefore(t, c, topic, 6)
		s := newStore()
		s.next[0] = 2
		runPartition(t, c, topic, topic+".dlq", 2, s, &fakeGen{}, nil)
		waitFor(t, 30*time.Second, "the records left", func() bool { return s.reached(map[int]int64{0: 10}) })
		b := s.committed()[0]
		if b[0].off.From != 2 || b[0].ids[0] != "x-6" {
			t.Fatalf("first batch %+v, want From 2 and event x-6", b[0])
		}
	})
}

// deleteRecordsBefore moves the log start of partition 0 to offset, as
// retention does. kafka-go has no DeleteRecords request; franz-go does.
func deleteRecordsBefore(t *testing.T, c cluster, topic string, offset int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := kmsg.NewPtrDeleteRecordsRequest()
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 0, offset
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	res, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
	for _, rt := range res.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("delete records of %s/%d: %v", rt.Topic, rp.Partition, err)
			}
		}
	}
}

// A store restart during COMMIT: the batch was stored but the handler saw
// an error, so its retry is fenced by its own commit. The group
// coordinator cannot confirm ownership at that moment (it moved): the
// partition must resume from the store's offset, not stop until the next
// rebalance while its lag grows.
func TestPartitionResumesWhenOwnershipUnconfirmed(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		publish(t, newProducer(t, c, topic), topic, "o", 30, 30)
		s := newStore()
		var once sync.Once
		h := HandlerFunc(func(ctx context.Context, part int, evs []event.Event, off process.Offset) error {
			err := s.handler("o").HandleBatch(ctx, part, evs, off)
			lost := false
			once.Do(func() { lost = err == nil })
			if lost {
				return errTransient // committed, but the answer was lost
			}
			return err
		})
		gen := &fakeGen{err: kafka.NotCoordinatorForGroup}
		cfg := consumerConfig(t, c, topic, topic+".dlq")
		cfg.BatchSize = 10
		cons, err := NewConsumer(cfg, s, h)
		if err != nil {
			t.Fatal(err)
		}
		com := newCommitter(gen, topic, cons.log)
		p := newPartition(cons, 0, 0, nil, com, gen)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); p.run(ctx); com.close() }()
		defer func() { cancel(); <-done }()

		reached := func() bool { return s.reached(map[int]int64{0: 30}) }
		deadline := time.Now().Add(30 * time.Second)
		for !reached() && time.Now().Before(deadline) {
			select {
			case <-done:
				t.Fatalf("the partition stopped after an unconfirmed fence; %d of 30 records stored", s.count())
			case <-time.After(20 * time.Millisecond):
			}
		}
		if !reached() {
			t.Fatal("timed out waiting for every record")
		}
		checkChains(t, s, readAll(t, c, topic), map[int]int64{})
		if s.fenced != 1 {
			t.Errorf("%d fenced attempts, want 1", s.fenced)
		}
	})
}

func TestOwnedElsewhere(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{kafka.IllegalGeneration, true},
		{kafka.UnknownMemberId, true},
		{kafka.RebalanceInProgress, true},
		{kafka.FencedInstanceID, true},
		{fmt.Errorf("commit: %w", kafka.IllegalGeneration), true},
		{kafka.NotCoordinatorForGroup, false},
		{kafka.GroupCoordinatorNotAvailable, false},
		{kafka.RequestTimedOut, false},
		{io.ErrUnexpectedEOF, false},
		{context.DeadlineExceeded, false},
		{&net.OpError{Op: "write", Net: "tcp", Err: errors.New("broken pipe")}, false},
	} {
		if got := ownedElsewhere(tc.err); got != tc.want {
			t.Errorf("ownedElsewhere(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A poison record the broker accepted just under its size limit grows
// past it with the dead-letter headers. It must still leave its
// partition: as a stub with its position and a reason, not retried forever.
func TestPartitionDeadLettersRecordTooLargeForDLQ(t *testing.T) {
	onKafka(t, func(t *testing.T, c cluster) {
		topic, dlq := c.topic(t, 1), c.topic(t, 1)
		raw := &kafka.Writer{Addr: kafka.TCP(c.brokers...), Topic: topic, RequiredAcks: kafka.RequireAll,
			BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
		defer raw.Close()
		// The largest value of a lone record under the broker's default
		// message.max.bytes (1,048,588 bytes for the whole record batch).
		big := bytes.Repeat([]byte("x"), 1_048_500)
		good := testEvent("orders", "good", 1)
		v, _ := Encode(&good)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := raw.WriteMessages(ctx, kafka.Message{Key: []byte("big"), Value: big}); err != nil {
			t.Fatalf("write the large record: %v", err)
		}
		if err := raw.WriteMessages(ctx, kafka.Message{Value: v}); err != nil {
			t.Fatal(err)
		}
		s, obs := newStore(), &lagObserver{}
		runPartition(t, c, topic, dlq, kafka.FirstOffset, s, &fakeGen{}, func(cfg *ConsumerConfig) {
			cfg.Observer = obs
		})
		waitFor(t, 30*time.Second, "both records handled", func() bool { return s.reached(map[int]int64{0: 2}) })

		dead := readAll(t, c, dlq)[0]
		if len(dead) != 1 {
			t.Fatalf("%d records in the DLQ, want 1", len(dead))
		}
		d := dead[0]
		if headerValue(d.Headers, HeaderDLQOffset) != "0" || headerValue(d.Headers, HeaderDLQTopic) != topic ||
			headerValue(d.Headers, HeaderDLQPartition) != "0" {
			t.Errorf("stub position headers %v", d.Headers)
		}
		size, _ := strconv.Atoi(headerValue(d.Headers, HeaderDLQSize))
		if size <= len(big) {
			t.Errorf("stub size header %d, want the refused record's size (> %d)", size, len(big))
		}
		if r := headerValue(d.Headers, HeaderDLQReason); !strings.Contains(r, "too large") ||
			!strings.Contains(r, strconv.Itoa(size)) || !strings.Contains(r, "not a JSON object") {
			t.Errorf("stub reason %q, want too large, its size and the decode error", r)
		}
		if len(d.Value) != maxStubValue || !bytes.Equal(d.Value, big[:maxStubValue]) || string(d.Key) != "big" {
			t.Errorf("stub key %q and %d value bytes, want big and the first %d", d.Key, len(d.Value), maxStubValue)
		}
		obs.mu.Lock()
		defer obs.mu.Unlock()
		if obs.dead != 1 {
			t.Errorf("observer counted %d dead letters, want 1", obs.dead)
		}
	})
}

// Large records: a batch holds no more than BatchBytes, except a record
// larger than that, which is a batch of its own; none is lost or reordered
// by the record held over to the next batch.
func TestPartitionBatchByteBudget(t *testing.T) {
	onBoth(t, func(t *testing.T, c cluster) {
		topic := c.topic(t, 1)
		p := newProducer(t, c, topic)
		pad := func(id string, n int) event.Event {
			e := testEvent("orders", id, 0)
			e.Payload = []byte(`{"pad":"` + strings.Repeat("p", n) + `"}`)
			return e
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var evs []event.Event
		for i := range 9 {
			n := 200 << 10
			if i == 4 {
				n = 700 << 10
			}
			evs = append(evs, pad("b-"+itoa(i), n))
		}
		for _, e := range evs {
			if err := p.Publish(ctx, []event.Event{e}); err != nil {
				t.Fatal(err)
			}
		}
		const budget = 512 << 10
		var mu sync.Mutex
		var sizes [][]int
		s := newStore()
		h := HandlerFunc(func(ctx context.Context, part int, evs []event.Event, off process.Offset) error {
			var b []int
			for _, e := range evs {
				b = append(b, len(e.Payload))
			}
			mu.Lock()
			sizes = append(sizes, b)
			mu.Unlock()
			return s.handler("b").HandleBatch(ctx, part, evs, off)
		})
		cfg := consumerConfig(t, c, topic, topic+".dlq")
		cfg.BatchBytes = budget
		cfg.BatchLinger = 300 * time.Millisecond // long enough to gather them all without a budget
		cons, err := NewConsumer(cfg, s, h)
		if err != nil {
			t.Fatal(err)
		}
		com := newCommitter(&fakeGen{}, topic, cons.log)
		part := newPartition(cons, 0, 0, nil, com, &fakeGen{})
		rctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); part.run(rctx); com.close() }()
		defer func() { stop(); <-done }()
		waitFor(t, 30*time.Second, "every record handled", func() bool { return s.reached(map[int]int64{0: 9}) })
		checkChains(t, s, readAll(t, c, topic), map[int]int64{})

		mu.Lock()
		defer mu.Unlock()
		pairs := 0
		for _, b := range sizes {
			total := 0
			for _, n := range b {
				total += n
			}
			if len(b) > 1 && total > budget {
				t.Errorf("batch of %d records, %d payload bytes: over the %d budget", len(b), total, budget)
			}
			if len(b) == 2 {
				pairs++
			}
		}
		if pairs == 0 {
			t.Errorf("batches %v: none of two records, the budget allows two", sizes)
		}
	})
}

// endsSeen is a log handler that keeps the log ends a partition reported
// while waiting past the end of its log.
type endsSeen struct {
	mu   sync.Mutex
	ends []int64
}

func (h *endsSeen) Enabled(context.Context, slog.Level) bool { return true }

func (h *endsSeen) Handle(_ context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "offset past the end of the log") {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "end" {
			h.mu.Lock()
			h.ends = append(h.ends, a.Value.Int64())
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

func (h *endsSeen) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *endsSeen) WithGroup(string) slog.Handler      { return h }

func (h *endsSeen) saw(end int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.ends, end)
}
