package kafka

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

func carrierPropagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

func spanContext(t *testing.T, traceHex, spanHex string) trace.SpanContext {
	t.Helper()
	tid, err := trace.TraceIDFromHex(traceHex)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := trace.SpanIDFromHex(spanHex)
	if err != nil {
		t.Fatal(err)
	}
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
}

func TestCarrierGetSetKeys(t *testing.T) {
	hs := []kafka.Header{{Key: "x-other", Value: []byte("1")}, {Key: "Traceparent", Value: []byte("old")}}
	c := (*HeaderCarrier)(&hs)
	if got := c.Get("traceparent"); got != "old" {
		t.Fatalf("Get is case-insensitive: got %q", got)
	}
	c.Set("traceparent", "new")
	c.Set("baggage", "k=v")
	if len(hs) != 3 || string(hs[1].Value) != "new" || hs[2].Key != "baggage" {
		t.Fatalf("Set replaces or appends: %+v", hs)
	}
	if got := c.Get("missing"); got != "" {
		t.Fatalf("Get of a missing key: %q", got)
	}
	keys := c.Keys()
	if len(keys) != 3 || keys[0] != "x-other" || keys[1] != "Traceparent" || keys[2] != "baggage" {
		t.Fatalf("Keys: %v", keys)
	}
}

func TestCarrierRoundTrip(t *testing.T) {
	prop := carrierPropagator()
	sc := spanContext(t, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	m, err := baggage.NewMember("tenant", "shop-1")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(m)
	if err != nil {
		t.Fatal(err)
	}
	ctx = baggage.ContextWithBaggage(ctx, bag)

	hs := InjectHeaders(ctx, prop)
	c := HeaderCarrier(hs)
	if got, want := c.Get("traceparent"), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"; got != want {
		t.Fatalf("traceparent %q, want %q", got, want)
	}

	out := ExtractContext(context.Background(), prop, hs)
	got := trace.SpanContextFromContext(out)
	if got.TraceID() != sc.TraceID() || got.SpanID() != sc.SpanID() || !got.IsSampled() || !got.IsRemote() {
		t.Fatalf("extracted %+v, want the injected %+v as remote", got, sc)
	}
	if v := baggage.FromContext(out).Member("tenant").Value(); v != "shop-1" {
		t.Fatalf("baggage tenant %q", v)
	}
}

func TestCarrierNothingToInject(t *testing.T) {
	if hs := InjectHeaders(context.Background(), carrierPropagator()); len(hs) != 0 {
		t.Fatalf("no span context, yet headers %+v", hs)
	}
	ctx := ExtractContext(context.Background(), carrierPropagator(), nil)
	if trace.SpanContextFromContext(ctx).IsValid() {
		t.Fatal("a span context from no headers")
	}
}

func TestCarrierProducerLinks(t *testing.T) {
	prop := carrierPropagator()
	a := spanContext(t, "11111111111111111111111111111111", "aaaaaaaaaaaaaaaa")
	b := spanContext(t, "22222222222222222222222222222222", "bbbbbbbbbbbbbbbb")
	ha := InjectHeaders(trace.ContextWithSpanContext(context.Background(), a), prop)
	hb := InjectHeaders(trace.ContextWithSpanContext(context.Background(), b), prop)
	hb2 := append([]kafka.Header{{Key: "x-other", Value: []byte("1")}}, hb...) // same span, other headers
	records := []kafka.Message{
		{Headers: ha}, {Headers: ha}, {Headers: nil}, {Headers: hb}, {Headers: hb2}, {Headers: ha},
		{Headers: []kafka.Header{{Key: "traceparent", Value: []byte("garbage")}}},
	}
	links := ProducerLinks(prop, records)
	if len(links) != 2 || links[0].SpanContext.SpanID() != a.SpanID() || links[1].SpanContext.SpanID() != b.SpanID() {
		t.Fatalf("links %+v, want one to each distinct producer span (a, b)", links)
	}

	// The hook's context reaches the processing core: its batch span links.
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	proc := process.New(nil, allNew{}, slog.New(slog.DiscardHandler), nil, process.WithTracerProvider(tp))
	ctx, finish := LinkProducers(prop)(context.Background(), records)
	evs := []event.Event{{Topic: "t", EventID: "1", Source: "s"}}
	if _, err := proc.Process(ctx, evs, 0, nil); err != nil {
		t.Fatal(err)
	}
	finish(nil)
	spans := rec.Ended()
	var batch sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "process batch" {
			batch = s
		}
	}
	if batch == nil {
		t.Fatalf("no batch span among %d", len(spans))
	}
	if l := batch.Links(); len(l) != 2 || l[0].SpanContext.TraceID() != a.TraceID() || l[1].SpanContext.TraceID() != b.TraceID() {
		t.Fatalf("batch span links %+v", l)
	}
	if ctx, _ := LinkProducers(prop)(context.Background(), []kafka.Message{{}}); ctx != context.Background() {
		t.Fatal("records without trace context changed the context")
	}
}

// allNew is a store for which every event is new.
type allNew struct{}

func (allNew) Persist(_ context.Context, b *process.Batch) (process.Persisted, error) {
	p := process.Persisted{New: make([]bool, len(b.Events))}
	for i := range p.New {
		p.New[i] = true
	}
	return p, nil
}

func TestCarrierTraceHeaders(t *testing.T) {
	prop := carrierPropagator()
	sc := spanContext(t, "33333333333333333333333333333333", "cccccccccccccccc")
	hs := TraceHeaders(prop)(trace.ContextWithSpanContext(context.Background(), sc))
	c := HeaderCarrier(hs)
	if got := c.Get("traceparent"); got != "00-33333333333333333333333333333333-cccccccccccccccc-01" {
		t.Fatalf("traceparent %q", got)
	}
}

// Records carry the trace context only: baggage comes from the client and
// would be copied into every record of a request.
func TestCarrierRecordsCarryNoBaggage(t *testing.T) {
	prop := carrierPropagator()
	sc := spanContext(t, "44444444444444444444444444444444", "dddddddddddddddd")
	m, err := baggage.NewMember("blob", strings.Repeat("b", 4000))
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(m)
	if err != nil {
		t.Fatal(err)
	}
	ctx := baggage.ContextWithBaggage(trace.ContextWithSpanContext(context.Background(), sc), bag)
	hs := TraceHeaders(prop)(ctx)
	if len(hs) != 1 || hs[0].Key != "traceparent" {
		t.Fatalf("record headers %v, want traceparent alone", (*HeaderCarrier)(&hs).Keys())
	}

	// Records written with baggage (older producers, other clients): it
	// is not parsed for the links.
	spy := &baggageSpy{}
	records := []kafka.Message{{Headers: InjectHeaders(ctx, prop)}}
	links := ProducerLinks(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, spy), records)
	if len(links) != 1 || links[0].SpanContext.SpanID() != sc.SpanID() {
		t.Fatalf("links %+v, want the producer span", links)
	}
	if spy.read != "" || spy.keys != 1 {
		t.Fatalf("the propagator read baggage %d bytes and saw %d keys, want none and traceparent", len(spy.read), spy.keys)
	}
}

// baggageSpy is a propagator that remembers what a carrier shows of baggage.
type baggageSpy struct {
	read string
	keys int
}

func (s *baggageSpy) Inject(context.Context, propagation.TextMapCarrier) {}
func (s *baggageSpy) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	s.read = c.Get("baggage")
	s.keys = len(c.Keys())
	return ctx
}
func (s *baggageSpy) Fields() []string { return []string{"baggage"} }
