// Package kafka is the event bus of the distributed mode: a Producer (on
// franz-go) that returns once every record is acknowledged by all in-sync
// replicas, and a consumer-group runner (on segmentio/kafka-go) that
// feeds each partition's batches to the processing core, resuming from the
// offsets the store committed with the rows (docs/architecture.md, "Offsets").
package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// HeaderInjector returns the headers every record of one Publish call
// carries, e.g. the trace context of the request.
type HeaderInjector func(ctx context.Context) []kafka.Header

// ProducerConfig configures a Producer. Zero values take the defaults.
type ProducerConfig struct {
	Brokers []string
	Topic   string
	// Security is how to connect: TLS and SASL (zero: neither).
	Security Security
	// BatchTimeout is how long a partition's records wait for more before
	// they are sent (default 0: at once). Concurrent Publish calls share
	// produce requests anyway: while requests are in flight (up to 5 per
	// broker), the records that arrive meanwhile collect into the next one,
	// one request per broker for all its partitions. A longer wait only
	// adds latency to a synchronous Publish.
	BatchTimeout time.Duration
	// BatchBytes bounds one partition's batch (default 1,000,012 bytes, the
	// broker's default message.max.bytes).
	BatchBytes int64
	// WriteTimeout bounds how long the broker may take to acknowledge one
	// produce request (default 10 s).
	WriteTimeout time.Duration
	// Headers, when set, adds headers to every record.
	Headers HeaderInjector
	// Tracer, when set, wraps each Publish in a producer span; Headers then
	// sees the span's context, so each record carries it.
	Tracer trace.TracerProvider
}

// Producer publishes events to Kafka. Publish returns once every record is
// acknowledged by all in-sync replicas.
//
// It is franz-go's client rather than kafka-go's Writer (which the
// consumers use): the Writer sends one produce request per partition and
// allocates a batch of BatchSize records for each, so single-event requests
// spread over many partitions cost the broker and this process a request
// and a large allocation each. franz-go sends one request per broker for all
// partitions, pipelined, and deduplicates its own retries (idempotent
// producer).
type Producer struct {
	// mu makes Close wait for the Publish calls in flight, and Publish
	// refuse once closed: the client would hold a record given after its
	// Close forever.
	mu      sync.RWMutex
	closed  bool
	cl      *kgo.Client
	topic   string
	sec     Security
	headers HeaderInjector
	tracer  trace.Tracer
}

// NewProducer returns a Producer; it connects on the first Publish.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	return newProducerWith(cfg)
}

// newProducerWith lets the benchmarks override options (acks) that the
// producer never changes.
func newProducerWith(cfg ProducerConfig, extra ...kgo.Opt) (*Producer, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return nil, errors.New("kafka producer: brokers and topic are required")
	}
	opts := append(cfg.Security.producerOpts(),
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		// Every in-sync replica, always (also what idempotence requires).
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Same key, same partition: copies of an event stay in order.
		// Murmur2 places keys as Java clients and kafka-go's Murmur2Balancer do.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerLinger(max(cfg.BatchTimeout, 0)),
		// Small JSON records: compressing costs both sides more CPU than
		// the bytes it saves on a local network.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.ProducerBatchMaxBytes(int32(orDefault(int(cfg.BatchBytes), 1000012))),
		kgo.ProduceRequestTimeout(durationOr(cfg.WriteTimeout, 10*time.Second)),
	)
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	p := &Producer{cl: cl, topic: cfg.Topic, sec: cfg.Security, headers: cfg.Headers}
	if cfg.Tracer != nil {
		p.tracer = cfg.Tracer.Tracer("github.com/event-aggregator/event-aggregator/pkg/bus/kafka")
	}
	return p, nil
}

// Publish writes events as one record each and returns when all are
// acknowledged. On error any subset may have been written: the client
// retries, and deduplication makes the retry safe.
func (p *Producer) Publish(ctx context.Context, events []event.Event) (err error) {
	if len(events) == 0 {
		return nil
	}
	if p.tracer != nil {
		var span trace.Span
		ctx, span = p.tracer.Start(ctx, "publish "+p.topic, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(semconv.MessagingSystemKafka, semconv.MessagingOperationTypeSend,
				semconv.MessagingDestinationName(p.topic), semconv.MessagingBatchMessageCount(len(events))))
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, "produce failed")
			}
			span.End()
		}()
	}
	var headers []kgo.RecordHeader
	if p.headers != nil {
		for _, h := range p.headers(ctx) {
			headers = append(headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
	}
	recs := make([]kgo.Record, len(events))
	ptrs := make([]*kgo.Record, len(events))
	for i := range events {
		v, err := Encode(&events[i])
		if err != nil {
			return err
		}
		recs[i] = kgo.Record{Key: Key(&events[i]), Value: v, Headers: headers}
		ptrs[i] = &recs[i]
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrProducerClosed
	}
	if err := summarize(p.cl.ProduceSync(ctx, ptrs...)); err != nil {
		return fmt.Errorf("produce %d records: %w", len(ptrs), p.sec.explain(err))
	}
	return nil
}

// ErrProducerClosed is what Publish returns after Close.
var ErrProducerClosed = errors.New("kafka producer: closed")

// Close waits for the Publish calls in flight and closes the connections;
// later calls fail with ErrProducerClosed.
func (p *Producer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.cl.Close()
	}
	return nil
}

// summarize turns the per-record results into one error.
func summarize(res kgo.ProduceResults) error {
	var first error
	failed := 0
	for _, r := range res {
		if r.Err != nil {
			failed++
			if first == nil {
				first = r.Err
			}
		}
	}
	switch {
	case failed == 0:
		return nil
	case len(res) == 1:
		return first
	}
	return fmt.Errorf("%d of %d records failed, first: %w", failed, len(res), first)
}

func durationOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
