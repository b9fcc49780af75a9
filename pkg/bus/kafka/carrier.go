package kafka

import (
	"bytes"
	"context"
	"strings"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// HeaderCarrier lets a propagator read and write record headers:
// prop.Inject(ctx, (*HeaderCarrier)(&msg.Headers)).
type HeaderCarrier []kafka.Header

var _ propagation.TextMapCarrier = (*HeaderCarrier)(nil)

// Get returns the value of the first header named key (case-insensitive, as
// the HTTP headers the context came from).
func (c *HeaderCarrier) Get(key string) string {
	for _, h := range *c {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces the header named key, or adds it.
func (c *HeaderCarrier) Set(key, value string) {
	for i, h := range *c {
		if strings.EqualFold(h.Key, key) {
			(*c)[i].Value = []byte(value)
			return
		}
	}
	*c = append(*c, kafka.Header{Key: key, Value: []byte(value)})
}

// Keys lists the header names.
func (c *HeaderCarrier) Keys() []string {
	keys := make([]string, len(*c))
	for i, h := range *c {
		keys[i] = h.Key
	}
	return keys
}

// InjectHeaders returns the headers that carry ctx's trace context (W3C
// traceparent, tracestate, baggage with the usual propagator); nil when ctx
// carries none.
func InjectHeaders(ctx context.Context, prop propagation.TextMapPropagator) []kafka.Header {
	var hs []kafka.Header
	prop.Inject(ctx, (*HeaderCarrier)(&hs))
	return hs
}

// ExtractContext returns ctx with the remote span context and baggage read
// from a record's headers.
func ExtractContext(ctx context.Context, prop propagation.TextMapPropagator, headers []kafka.Header) context.Context {
	return prop.Extract(ctx, (*HeaderCarrier)(&headers))
}

// TraceHeaders is the Producer's HeaderInjector for trace propagation: every
// record of a Publish call carries the caller's trace context. Baggage is
// left out whatever prop propagates: it comes from the client (up to 8 KiB
// per request) and would be copied into each of the request's records.
func TraceHeaders(prop propagation.TextMapPropagator) HeaderInjector {
	return func(ctx context.Context) []kafka.Header {
		var hs []kafka.Header
		prop.Inject(ctx, noBaggage{(*HeaderCarrier)(&hs)})
		return hs
	}
}

// LinkProducers is the Consumer's BatchHook for trace propagation: the
// batch's processing span (see process.ContextWithLinks) links to each
// record's producer context.
func LinkProducers(prop propagation.TextMapPropagator) BatchHook {
	return func(ctx context.Context, records []kafka.Message) (context.Context, func(error)) {
		if links := ProducerLinks(prop, records); len(links) > 0 {
			ctx = process.ContextWithLinks(ctx, links)
		}
		return ctx, func(error) {}
	}
}

// ProducerLinks returns one link per distinct producer span context found in
// the records' headers. Baggage headers are not read: links need none.
func ProducerLinks(prop propagation.TextMapPropagator, records []kafka.Message) []trace.Link {
	type spanKey struct {
		trace.TraceID
		trace.SpanID
	}
	var (
		links []trace.Link
		seen  = map[spanKey]struct{}{}
		prev  []kafka.Header
	)
	for i := range records {
		hs := records[i].Headers
		// The records of one Publish call share their headers: parse once.
		if i > 0 && sameHeaders(hs, prev) {
			continue
		}
		prev = hs
		sc := trace.SpanContextFromContext(prop.Extract(context.Background(), noBaggage{(*HeaderCarrier)(&hs)}))
		if !sc.IsValid() {
			continue
		}
		k := spanKey{sc.TraceID(), sc.SpanID()}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		links = append(links, trace.Link{SpanContext: sc})
	}
	return links
}

func sameHeaders(a, b []kafka.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// noBaggage hides the W3C baggage header from a propagator: records carry
// the trace context only.
type noBaggage struct{ c *HeaderCarrier }

func (n noBaggage) Get(key string) string {
	if isBaggage(key) {
		return ""
	}
	return n.c.Get(key)
}

func (n noBaggage) Set(key, value string) {
	if !isBaggage(key) {
		n.c.Set(key, value)
	}
}

func (n noBaggage) Keys() []string {
	keys := n.c.Keys()
	out := keys[:0] // Keys returns a fresh slice
	for _, k := range keys {
		if !isBaggage(k) {
			out = append(out, k)
		}
	}
	return out
}

func isBaggage(key string) bool { return strings.EqualFold(key, "baggage") }
