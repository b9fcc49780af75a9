// Package process is the processing core: claim each event, persist the
// batch in one store transaction, then mark the events done. The store's
// unique key is the only judge of what is new; the claimer is a shortcut that
// lets a known duplicate skip the store.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// Claim is what the claimer says about one event.
type Claim uint8

const (
	// Owned: this worker holds the lease; the store decides.
	Owned Claim = iota
	// Done: the event was stored before; drop it as a duplicate.
	Done
	// Leased: another worker holds a live lease. Not a verdict: the store
	// decides, so a lease of a crashed worker never loses an event.
	Leased
)

// Claimer leases events before they are stored and remembers them after.
// at is the Kafka range of the batch (nil in the all-in-one): a done mark
// records the range of the batch that stored the event, and Claim answers
// Done only for a mark that TrustDone accepts for the batch at hand.
type Claimer interface {
	Claim(ctx context.Context, keys []event.Key, at *Offset) ([]Claim, error)
	MarkDone(ctx context.Context, keys []event.Key, at *Offset) error
}

// TrustDone reports whether a done mark written after the batch that
// consumed mark (nil: a batch without a Kafka range) may drop, without
// asking the store, an event of the batch consuming at.
//
// The store's offset of a partition only moves forward, in the same
// transaction as the rows, and Persist fails unless it equals at.From. So a
// mark of the same partition whose batch ended at or before at.From was
// written for a batch the store still holds, whatever the store lost since
// (a restore from backup, a failover that dropped the last commits). A mark
// from past at.From, from another partition or topic, or without a range,
// cannot be checked against the store: it is not a verdict, and the store's
// unique key decides.
func TrustDone(mark, at *Offset) bool {
	if at == nil {
		// The all-in-one: the claims live and die with the process.
		return true
	}
	return mark != nil && mark.Topic == at.Topic && mark.Partition == at.Partition && mark.Next <= at.From
}

// Store persists a batch atomically: rows, counters and offsets in one
// transaction.
type Store interface {
	Persist(ctx context.Context, b *Batch) (Persisted, error)
}

// Batch is what one store transaction writes.
type Batch struct {
	// Events to insert, distinct keys, in processing order.
	Events []event.Event
	// Dropped counts per topic the duplicates known before the store was
	// asked (same key earlier in the batch, or a "done" claim). They are
	// counted as received and duplicate in the same transaction.
	Dropped map[string]int
	// Shard spreads the counter rows so writers never contend (the Kafka
	// partition in the distributed mode, 0 in the all-in-one).
	Shard int
	// Offset, when set, is recorded in the same transaction; the store fails
	// with ErrFenced when the stored offset is not Offset.From.
	Offset *Offset
}

// Offset is a consumed range of one Kafka partition: records [From, Next).
type Offset struct {
	Topic     string
	Partition int
	From      int64
	Next      int64
	// First says the consumer found no stored offset for the partition:
	// only such a batch may record one where none is. Any other batch
	// finding none is fenced, so a store reset under a running consumer is
	// noticed instead of going on from where the old store was.
	First bool
}

// Persisted tells which events of a batch were new.
type Persisted struct {
	New []bool // New[i] reports whether Batch.Events[i] was inserted
}

// ErrFenced reports that another consumer already committed past the batch's
// starting offset: this one is a zombie and must drop the batch.
var ErrFenced = errors.New("offset fenced: another consumer owns the partition")

// Result counts what one Process call did; Received == Unique + Duplicates.
type Result struct {
	Received   int
	Unique     int
	Duplicates int
}

// Processor runs the claim → persist → done protocol.
type Processor struct {
	claimer Claimer
	store   Store
	log     *slog.Logger
	obs     Observer
	stages  StageObserver
	tracer  trace.Tracer
}

// Observer hears about each processed batch (metrics). Optional.
type Observer interface {
	Processed(ctx context.Context, r Result, claimErr error)
}

// StageObserver hears how long the claimer and the store took for a batch.
// An Observer that also implements it is told.
type StageObserver interface {
	ObserveClaim(d time.Duration)
	ObserveMarkDone(d time.Duration)
	ObserveStore(d time.Duration)
}

// Option configures a Processor.
type Option func(*Processor)

// WithTracerProvider traces every batch: a "process batch" span with
// "claim", "persist" and "mark done" children.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(p *Processor) {
		if tp != nil {
			p.tracer = tp.Tracer("github.com/event-aggregator/event-aggregator/pkg/process")
		}
	}
}

// New returns a Processor. claimer may be nil: the store alone then decides.
func New(claimer Claimer, store Store, log *slog.Logger, obs Observer, opts ...Option) *Processor {
	p := &Processor{claimer: claimer, store: store, log: log, obs: obs,
		tracer: noop.NewTracerProvider().Tracer("")}
	p.stages, _ = obs.(StageObserver)
	for _, o := range opts {
		o(p)
	}
	return p
}

type linksKey struct{}

// ContextWithLinks returns ctx carrying links for the batch span of a
// Process call made with it: in the distributed mode, the producer context
// of each record of the batch.
func ContextWithLinks(ctx context.Context, links []trace.Link) context.Context {
	return context.WithValue(ctx, linksKey{}, links)
}

// Why a duplicate was dropped; the debug log and the span events say it.
const (
	whyInBatch = "repeated in batch"
	whyDone    = "already done"
	whyStored  = "already stored"
)

// dropCounts counts a batch's duplicates by why they were dropped.
type dropCounts struct{ inBatch, done, stored int }

// Process stores events exactly once and counts every duplicate. On error
// nothing was committed and the same events may be processed again.
func (p *Processor) Process(ctx context.Context, events []event.Event, shard int, off *Offset) (res Result, err error) {
	ctx, span := p.startBatch(ctx, len(events), shard, off)
	var drops dropCounts
	defer func() { p.endBatch(span, res, drops, err) }()

	b := &Batch{Shard: shard, Offset: off, Dropped: map[string]int{}}
	// firsts[i] is the index in events of the first copy of keys[i]: the
	// first copy wins.
	keys := make([]event.Key, 0, len(events))
	firsts := make([]int, 0, len(events))
	seen := make(map[event.Key]struct{}, len(events))
	for i := range events {
		k := events[i].Key()
		if _, dup := seen[k]; dup {
			b.Dropped[k.Topic]++
			drops.inBatch++
			p.dropped(ctx, k, whyInBatch)
			continue
		}
		seen[k] = struct{}{}
		keys = append(keys, k)
		firsts = append(firsts, i)
	}

	candidates := keys
	var claimErr error
	var claims []Claim
	if p.claimer != nil && len(keys) > 0 {
		claims, claimErr = p.claim(ctx, keys, off)
		if claimErr != nil {
			// Redis is a shortcut, not the judge: go on through the store.
			claims = nil
			// Debug: the claimer reports its outage once, not per batch.
			p.log.DebugContext(ctx, "claim failed; the store alone decides", "err", claimErr)
		}
	}
	b.Events = make([]event.Event, 0, len(keys))
	if claims != nil {
		candidates = make([]event.Key, 0, len(keys))
	}
	for i, k := range keys {
		if claims != nil {
			if claims[i] == Done {
				b.Dropped[k.Topic]++
				drops.done++
				p.dropped(ctx, k, whyDone)
				continue
			}
			candidates = append(candidates, k)
		}
		b.Events = append(b.Events, events[firsts[i]])
	}

	persisted, err := p.persist(ctx, b)
	if err != nil {
		return Result{}, fmt.Errorf("persist batch: %w", err)
	}
	res = Result{Received: len(events)}
	for i, isNew := range persisted.New {
		if isNew {
			res.Unique++
		} else {
			drops.stored++
			p.dropped(ctx, b.Events[i].Key(), whyStored)
		}
	}
	res.Duplicates = res.Received - res.Unique

	if p.claimer != nil && claimErr == nil && len(candidates) > 0 {
		// After the commit: remember the events so later copies skip the
		// store. A failure costs speed only.
		if err := p.markDone(ctx, candidates, off); err != nil {
			p.log.WarnContext(ctx, "mark done failed", "err", err)
		}
	}
	if p.obs != nil {
		p.obs.Processed(ctx, res, claimErr)
	}
	p.log.InfoContext(ctx, "batch processed", "received", res.Received, "unique", res.Unique,
		"duplicates", res.Duplicates, "shard", shard, "claim_failed", claimErr != nil)
	return res, nil
}

func (p *Processor) startBatch(ctx context.Context, n, shard int, off *Offset) (context.Context, trace.Span) {
	links, _ := ctx.Value(linksKey{}).([]trace.Link)
	kind := trace.SpanKindInternal
	attrs := []attribute.KeyValue{semconv.MessagingBatchMessageCount(n), attribute.Int("aggregator.shard", shard)}
	if off != nil {
		// A batch of one Kafka partition: messaging conventions.
		kind = trace.SpanKindConsumer
		attrs = append(attrs, semconv.MessagingSystemKafka, semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(off.Topic),
			semconv.MessagingDestinationPartitionID(strconv.Itoa(off.Partition)),
			attribute.Int64("aggregator.kafka.offset.from", off.From),
			attribute.Int64("aggregator.kafka.offset.next", off.Next))
	}
	return p.tracer.Start(ctx, "process batch", trace.WithSpanKind(kind),
		trace.WithLinks(links...), trace.WithAttributes(attrs...))
}

func (p *Processor) endBatch(span trace.Span, res Result, drops dropCounts, err error) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "batch not committed")
		return
	}
	span.SetAttributes(attribute.Int("aggregator.batch.unique", res.Unique),
		attribute.Int("aggregator.batch.duplicates", res.Duplicates))
	for _, d := range []struct {
		why string
		n   int
	}{{whyInBatch, drops.inBatch}, {whyDone, drops.done}, {whyStored, drops.stored}} {
		if d.n > 0 {
			span.AddEvent("duplicates dropped", trace.WithAttributes(
				attribute.String("aggregator.duplicate.reason", d.why), attribute.Int("aggregator.duplicate.count", d.n)))
		}
	}
}

func (p *Processor) claim(ctx context.Context, keys []event.Key, at *Offset) ([]Claim, error) {
	ctx, span := p.tracer.Start(ctx, "claim", trace.WithAttributes(attribute.Int("aggregator.keys", len(keys))))
	start := time.Now()
	claims, err := p.claimer.Claim(ctx, keys, at)
	if p.stages != nil {
		p.stages.ObserveClaim(time.Since(start))
	}
	endStage(span, err)
	return claims, err
}

func (p *Processor) persist(ctx context.Context, b *Batch) (Persisted, error) {
	ctx, span := p.tracer.Start(ctx, "persist", trace.WithAttributes(attribute.Int("aggregator.events", len(b.Events))))
	start := time.Now()
	persisted, err := p.store.Persist(ctx, b)
	if p.stages != nil {
		p.stages.ObserveStore(time.Since(start))
	}
	endStage(span, err)
	return persisted, err
}

func (p *Processor) markDone(ctx context.Context, keys []event.Key, at *Offset) error {
	ctx, span := p.tracer.Start(ctx, "mark done", trace.WithAttributes(attribute.Int("aggregator.keys", len(keys))))
	start := time.Now()
	err := p.claimer.MarkDone(ctx, keys, at)
	if p.stages != nil {
		p.stages.ObserveMarkDone(time.Since(start))
	}
	endStage(span, err)
	return err
}

func endStage(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func (p *Processor) dropped(ctx context.Context, k event.Key, why string) {
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.DebugContext(ctx, "duplicate dropped", "topic", k.Topic, "event_id", k.EventID, "why", why)
	}
}
