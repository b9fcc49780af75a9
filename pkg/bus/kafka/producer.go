// Package kafka is the event bus of the distributed mode, on
// segmentio/kafka-go: a Producer that returns once every record is
// acknowledged by all in-sync replicas, and a consumer-group runner that
// feeds each partition's batches to the processing core, resuming from the
// offsets the store committed with the rows (docs/architecture.md, "Offsets").
package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
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
	// BatchTimeout is how long the writer waits to fill a batch (default
	// 2 ms). Concurrent Publish calls share batches; kafka-go's own default
	// of 1 s would make every synchronous Publish take a second.
	BatchTimeout time.Duration
	// BatchSize is the most records of one produce batch per partition
	// (default 1,000).
	BatchSize int
	// BatchBytes bounds one produce batch (default 1 MiB, the broker's
	// default message.max.bytes).
	BatchBytes int64
	// WriteTimeout bounds one produce request (default 10 s).
	WriteTimeout time.Duration
	// Headers, when set, adds headers to every record.
	Headers HeaderInjector
	// Tracer, when set, wraps each Publish in a producer span; Headers then
	// sees the span's context, so each record carries it.
	Tracer trace.TracerProvider
}

// Producer publishes events to Kafka. Publish returns once every record is
// acknowledged by all in-sync replicas.
type Producer struct {
	w       *kafka.Writer
	headers HeaderInjector
	tracer  trace.Tracer
}

// NewProducer returns a Producer; it connects on the first Publish.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if len(cfg.Brokers) == 0 || cfg.Topic == "" {
		return nil, errors.New("kafka producer: brokers and topic are required")
	}
	w := &kafka.Writer{
		Addr:  kafka.TCP(cfg.Brokers...),
		Topic: cfg.Topic,
		// Same key, same partition: copies of an event stay in order.
		// Murmur2 places keys as Java clients do.
		Balancer: kafka.Murmur2Balancer{},
		// Set explicitly: the zero value means no acknowledgement at all.
		RequiredAcks: kafka.RequireAll,
		Async:        false,
		BatchTimeout: durationOr(cfg.BatchTimeout, 2*time.Millisecond),
		BatchSize:    orDefault(cfg.BatchSize, 1000),
		BatchBytes:   int64(orDefault(int(cfg.BatchBytes), 1<<20)),
		WriteTimeout: durationOr(cfg.WriteTimeout, 10*time.Second),
		// Its own transport, so closing the producer closes its connections.
		Transport: cfg.Security.transport(),
	}
	p := &Producer{w: w, headers: cfg.Headers}
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
		ctx, span = p.tracer.Start(ctx, "publish "+p.w.Topic, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(semconv.MessagingSystemKafka, semconv.MessagingOperationTypeSend,
				semconv.MessagingDestinationName(p.w.Topic), semconv.MessagingBatchMessageCount(len(events))))
		defer func() {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, "produce failed")
			}
			span.End()
		}()
	}
	var headers []kafka.Header
	if p.headers != nil {
		headers = p.headers(ctx)
	}
	msgs := make([]kafka.Message, len(events))
	for i := range events {
		v, err := Encode(&events[i])
		if err != nil {
			return err
		}
		msgs[i] = kafka.Message{Key: Key(&events[i]), Value: v, Headers: headers}
	}
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("produce %d records: %w", len(msgs), summarize(err))
	}
	return nil
}

// Close flushes pending writes and closes the connections.
func (p *Producer) Close() error {
	err := p.w.Close()
	if tr, ok := p.w.Transport.(*kafka.Transport); ok {
		tr.CloseIdleConnections()
	}
	if err != nil {
		return fmt.Errorf("close producer: %w", err)
	}
	return nil
}

// summarize turns kafka-go's per-record error list into one error.
func summarize(err error) error {
	var werrs kafka.WriteErrors
	if !errors.As(err, &werrs) {
		return err
	}
	var first error
	for _, e := range werrs {
		if e != nil {
			first = e
			break
		}
	}
	return fmt.Errorf("%d of %d records failed, first: %w", werrs.Count(), len(werrs), first)
}

func durationOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
