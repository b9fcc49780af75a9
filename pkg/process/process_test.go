package process_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// store says every event is new but those in stored; it keeps the last
// batch it was asked to persist.
type store struct {
	stored map[string]bool
	err    error
	calls  int
	last   process.Batch
}

func (s *store) Persist(_ context.Context, b *process.Batch) (process.Persisted, error) {
	s.calls++
	s.last = *b
	if s.err != nil {
		return process.Persisted{}, s.err
	}
	p := process.Persisted{New: make([]bool, len(b.Events))}
	for i, e := range b.Events {
		p.New[i] = !s.stored[e.EventID]
	}
	return p, nil
}

// observer records what the processor reports.
type observer struct {
	mu                    sync.Mutex
	results               []process.Result
	claimErr              error // of the last batch
	claims, marks, stores int
}

func (o *observer) Processed(_ context.Context, r process.Result, claimErr error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.results = append(o.results, r)
	o.claimErr = claimErr
}
func (o *observer) ObserveClaim(time.Duration)    { o.mu.Lock(); o.claims++; o.mu.Unlock() }
func (o *observer) ObserveMarkDone(time.Duration) { o.mu.Lock(); o.marks++; o.mu.Unlock() }
func (o *observer) ObserveStore(time.Duration)    { o.mu.Lock(); o.stores++; o.mu.Unlock() }

func events(ids ...string) []event.Event {
	out := make([]event.Event, len(ids))
	for i, id := range ids {
		out[i] = event.Event{Topic: "orders", EventID: id, Timestamp: time.Unix(0, 0).UTC(), Source: "test"}
	}
	return out
}

func tracer() (*tracetest.SpanRecorder, trace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	return rec, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
}

func byName(spans []sdktrace.ReadOnlySpan) map[string]sdktrace.ReadOnlySpan {
	m := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		m[s.Name()] = s
	}
	return m
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestProcessCountsEveryDuplicate(t *testing.T) {
	obs := &observer{}
	p := process.New(&claimer{claims: map[string]process.Claim{"b": process.Done}}, &store{stored: map[string]bool{"c": true}},
		slog.New(slog.DiscardHandler), obs)
	res, err := p.Process(context.Background(), events("a", "a", "b", "c", "d"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (process.Result{Received: 5, Unique: 2, Duplicates: 3}); res != want {
		t.Fatalf("result %+v, want %+v", res, want)
	}
	if len(obs.results) != 1 || obs.results[0] != res {
		t.Fatalf("observer heard %+v", obs.results)
	}
	if obs.claims != 1 || obs.stores != 1 || obs.marks != 1 {
		t.Fatalf("stage timings: claim %d, store %d, mark done %d; want 1 each", obs.claims, obs.stores, obs.marks)
	}
}

func TestProcessBatchSpan(t *testing.T) {
	rec, tp := tracer()
	p := process.New(&claimer{claims: map[string]process.Claim{"b": process.Done}}, &store{stored: map[string]bool{"c": true}},
		slog.New(slog.DiscardHandler), nil, process.WithTracerProvider(tp))

	producer := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	ctx := process.ContextWithLinks(context.Background(), []trace.Link{{SpanContext: producer}})
	off := &process.Offset{Topic: "events", Partition: 3, From: 10, Next: 16}
	if _, err := p.Process(ctx, events("a", "a", "b", "c", "c", "d"), 3, off); err != nil {
		t.Fatal(err)
	}

	spans := byName(rec.Ended())
	batch := spans["process batch"]
	if batch == nil {
		t.Fatalf("no batch span: %v", spans)
	}
	if batch.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kind %v, want consumer for a Kafka batch", batch.SpanKind())
	}
	a := attrs(batch)
	for k, want := range map[attribute.Key]any{
		"messaging.batch.message_count":      int64(6),
		"aggregator.shard":                   int64(3),
		"aggregator.batch.unique":            int64(2),
		"aggregator.batch.duplicates":        int64(4),
		"messaging.system":                   "kafka",
		"messaging.destination.name":         "events",
		"messaging.destination.partition.id": "3",
		"aggregator.kafka.offset.from":       int64(10),
	} {
		if got := a[k].AsInterface(); got != want {
			t.Errorf("attribute %s = %v, want %v", k, got, want)
		}
	}
	if l := batch.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != producer.SpanID() {
		t.Errorf("links %+v, want the producer's context", l)
	}

	// One event per reason, with the count of the batch.
	got := map[string]int64{}
	for _, e := range batch.Events() {
		if e.Name != "duplicates dropped" {
			continue
		}
		var why string
		var n int64
		for _, kv := range e.Attributes {
			switch kv.Key {
			case "aggregator.duplicate.reason":
				why = kv.Value.AsString()
			case "aggregator.duplicate.count":
				n = kv.Value.AsInt64()
			}
		}
		got[why] = n
	}
	want := map[string]int64{"repeated in batch": 2, "already done": 1, "already stored": 1}
	if len(got) != len(want) {
		t.Errorf("duplicate events %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("duplicate events %v, want %v", got, want)
		}
	}

	for _, name := range []string{"claim", "persist", "mark done"} {
		s := spans[name]
		if s == nil {
			t.Errorf("no %q span", name)
			continue
		}
		if s.Parent().SpanID() != batch.SpanContext().SpanID() {
			t.Errorf("%q is not a child of the batch span", name)
		}
	}
}

func TestProcessSpanParentAndErrors(t *testing.T) {
	rec, tp := tracer()
	boom := errors.New("database gone")
	p := process.New(&claimer{err: errors.New("redis gone")}, &store{err: boom},
		slog.New(slog.DiscardHandler), nil, process.WithTracerProvider(tp))

	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{7}, SpanID: trace.SpanID{8}, TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), parent)
	if _, err := p.Process(ctx, events("a"), 0, nil); !errors.Is(err, boom) {
		t.Fatalf("err %v, want the store's", err)
	}
	spans := byName(rec.Ended())
	batch := spans["process batch"]
	if batch.Parent().SpanID() != parent.SpanID() || batch.SpanContext().TraceID() != parent.TraceID() {
		t.Errorf("batch span not in the caller's trace")
	}
	if batch.SpanKind() != trace.SpanKindInternal {
		t.Errorf("kind %v, want internal outside Kafka", batch.SpanKind())
	}
	if batch.Status().Code != codes.Error {
		t.Errorf("batch status %+v, want error", batch.Status())
	}
	for _, name := range []string{"claim", "persist"} {
		if s := spans[name]; s == nil || s.Status().Code != codes.Error {
			t.Errorf("%q span should carry the error", name)
		}
	}
	if _, ok := spans["mark done"]; ok {
		t.Error("mark done after a failed commit")
	}
}

func TestProcessUntraced(t *testing.T) {
	// No tracer provider: a noop tracer, and the links in the context are
	// ignored.
	p := process.New(nil, &store{}, slog.New(slog.DiscardHandler), nil)
	ctx := process.ContextWithLinks(context.Background(), []trace.Link{{}})
	res, err := p.Process(ctx, events("a", "b", "a"), 0, nil)
	if err != nil || res != (process.Result{Received: 3, Unique: 2, Duplicates: 1}) {
		t.Fatalf("%+v %v", res, err)
	}
}

// BenchmarkProcess measures the core's own cost (fake claimer and store),
// untraced and traced.
func BenchmarkProcess(b *testing.B) {
	one := events("a")
	hundred := make([]event.Event, 100)
	for i := range hundred {
		hundred[i] = events(strconv.Itoa(i))[0]
	}
	// Spans are recorded, then dropped: the cost of tracing, not of export.
	recording := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	for _, c := range []struct {
		name string
		opts []process.Option
	}{
		{"untraced", nil},
		{"traced", []process.Option{process.WithTracerProvider(recording)}},
	} {
		p := process.New(&claimer{}, &store{}, slog.New(slog.DiscardHandler), &observer{}, c.opts...)
		for _, batch := range [][]event.Event{one, hundred} {
			b.Run(fmt.Sprintf("%s/%d", c.name, len(batch)), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := p.Process(context.Background(), batch, 0, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// memStore is a store with a unique key and per-partition offsets, which a
// test can roll back to an earlier state, as a restore from backup does.
type memStore struct {
	rows    map[event.Key]bool
	offsets map[int]int64
}

func (s *memStore) Persist(_ context.Context, b *process.Batch) (process.Persisted, error) {
	if o := b.Offset; o != nil {
		if next, ok := s.offsets[o.Partition]; ok && next != o.From {
			return process.Persisted{}, process.ErrFenced
		}
		s.offsets[o.Partition] = o.Next
	}
	p := process.Persisted{New: make([]bool, len(b.Events))}
	for i, e := range b.Events {
		p.New[i] = !s.rows[e.Key()]
		s.rows[e.Key()] = true
	}
	return p, nil
}

// The claimer is told each batch's Kafka range: done marks written before
// the store went back in time drop nothing after it.
func TestProcessDoneMarksNeverOutrankTheStore(t *testing.T) {
	mark := &markingClaimer{marks: map[event.Key]process.Offset{}}
	st := &memStore{rows: map[event.Key]bool{}, offsets: map[int]int64{}}
	p := process.New(mark, st, slog.New(slog.DiscardHandler), nil)
	at := func(from, next int64) *process.Offset {
		return &process.Offset{Topic: "events", Partition: 2, From: from, Next: next}
	}
	process1 := func(off *process.Offset, ids ...string) process.Result {
		t.Helper()
		res, err := p.Process(context.Background(), events(ids...), 2, off)
		if err != nil {
			t.Fatalf("process [%d, %d): %v", off.From, off.Next, err)
		}
		return res
	}
	process1(at(0, 2), "a", "b")
	// The backup: the store as it is now.
	backup := memStore{rows: map[event.Key]bool{}, offsets: map[int]int64{2: 2}}
	for k := range st.rows {
		backup.rows[k] = true
	}
	process1(at(2, 4), "c", "d")
	// A copy of a later in the log is dropped by its mark.
	if res := process1(at(4, 5), "a"); res.Duplicates != 1 || mark.stored["a"] != 1 {
		t.Fatalf("a copy of a stored event: %+v, stored %d times", res, mark.stored["a"])
	}

	// Restored: c and d are gone, their marks are not. The records from
	// offset 2 are read again, and c, d are stored again.
	*st = backup
	if res := process1(at(2, 4), "c", "d"); res.Unique != 2 {
		t.Fatalf("after the restore, c and d: %+v; want both stored again", res)
	}
	if res := process1(at(4, 5), "a"); res.Duplicates != 1 {
		t.Fatalf("after the restore, a copy of a: %+v; want a duplicate", res)
	}
	if !st.rows[event.Key{Topic: "orders", EventID: "c"}] || !st.rows[event.Key{Topic: "orders", EventID: "d"}] {
		t.Fatal("c and d are not in the restored store")
	}
}

// markingClaimer keeps done marks with their range and applies TrustDone.
type markingClaimer struct {
	marks  map[event.Key]process.Offset
	stored map[string]int
}

func (c *markingClaimer) Claim(_ context.Context, keys []event.Key, at *process.Offset) ([]process.Claim, error) {
	out := make([]process.Claim, len(keys))
	for i, k := range keys {
		if m, ok := c.marks[k]; ok {
			out[i] = process.Leased
			if process.TrustDone(&m, at) {
				out[i] = process.Done
			}
		}
	}
	return out, nil
}

func (c *markingClaimer) MarkDone(_ context.Context, keys []event.Key, at *process.Offset) error {
	if c.stored == nil {
		c.stored = map[string]int{}
	}
	for _, k := range keys {
		c.marks[k] = *at
		c.stored[k.EventID]++
	}
	return nil
}
