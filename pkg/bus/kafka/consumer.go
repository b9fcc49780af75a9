package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/segmentio/kafka-go"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// Handler processes one batch of a partition. It must record off in the same
// transaction as the events (the store's offsets are the truth) and return
// process.ErrFenced when the stored offset is not off.From. Events may be
// empty when every record of the batch was poison: the offset still moves.
type Handler interface {
	HandleBatch(ctx context.Context, partition int, events []event.Event, off process.Offset) error
}

// Processor is the processing core as the consumer feeds it.
type Processor interface {
	Process(ctx context.Context, events []event.Event, shard int, off *process.Offset) (process.Result, error)
}

// ProcessorHandler hands each batch to the processing core, the partition
// being the counter shard, so workers never contend on a counter row.
func ProcessorHandler(p Processor) ProcessorAdapter { return ProcessorAdapter{p: p} }

// ProcessorAdapter is the Handler that feeds the processing core; see
// ProcessorHandler.
type ProcessorAdapter struct{ p Processor }

var _ Handler = ProcessorAdapter{}

// HandleBatch processes events with the partition as the counter shard and
// off recorded in the same transaction.
func (h ProcessorAdapter) HandleBatch(ctx context.Context, partition int, events []event.Event, off process.Offset) error {
	_, err := h.p.Process(ctx, events, partition, &off)
	return err
}

// OffsetStore reads the next offset to consume of each partition, as the
// store committed it.
type OffsetStore interface {
	Offsets(ctx context.Context, topic string) (map[int]int64, error)
}

// Observer hears about consumption, for metrics. Optional; calls must be
// cheap and safe from many goroutines.
type Observer interface {
	// Lag is the high watermark minus the next offset to process.
	Lag(topic string, partition int, lag int64)
	// Revoked says the partition left this consumer: forget its lag.
	Revoked(topic string, partition int)
	// DeadLettered counts records sent to the dead-letter topic.
	DeadLettered(topic string, partition int, n int)
}

// BatchHook wraps the handling of one batch, e.g. in a trace span linked to
// each record's producer context (from the record headers). It returns the
// handler's context and a function told the batch's outcome. The records
// are reused once that function returns. Optional.
type BatchHook func(ctx context.Context, records []kafka.Message) (context.Context, func(error))

// ConsumerConfig configures a Consumer. Zero values take the defaults.
type ConsumerConfig struct {
	Brokers  []string
	Topic    string
	DLQTopic string
	Group    string
	// Security is how every connection of the consumer (group, partition
	// readers, dead letters) is made: TLS and SASL (zero: neither).
	Security Security

	BatchSize   int           // most records per batch (default 500)
	BatchLinger time.Duration // wait to fill a batch after its first record (default 5 ms)
	// BatchBytes bounds the key, value and header bytes of one batch
	// (default 8 MiB), so one store transaction stays well within
	// HandlerTimeout whatever the record sizes. A larger record is a batch
	// of its own.
	BatchBytes int

	// HandlerTimeout bounds one HandleBatch attempt (default 10 s). An
	// attempt in flight when the partition is revoked runs to its end.
	HandlerTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts of a batch
	// that failed (defaults 100 ms and 5 s; each wait drawn within ±25%). A
	// batch is retried until it succeeds or the partition is revoked; it is
	// never skipped.
	RetryMin, RetryMax time.Duration

	// Group membership; see kafka.ConsumerGroupConfig. Defaults 10 s, 1 s
	// and 30 s: a crashed worker's partitions move within ~10 s.
	SessionTimeout    time.Duration
	HeartbeatInterval time.Duration
	RebalanceTimeout  time.Duration

	Log      *slog.Logger // default slog.Default()
	Observer Observer
	Hook     BatchHook
}

// DefaultBatchBytes is the byte budget of a batch when BatchBytes is unset.
const DefaultBatchBytes = 8 << 20

func (c *ConsumerConfig) setDefaults() error {
	if len(c.Brokers) == 0 || c.Topic == "" || c.DLQTopic == "" || c.Group == "" {
		return errors.New("kafka consumer: brokers, topic, DLQ topic and group are required")
	}
	c.BatchSize = orDefault(c.BatchSize, 500)
	c.BatchLinger = durationOr(c.BatchLinger, 5*time.Millisecond)
	c.BatchBytes = orDefault(c.BatchBytes, DefaultBatchBytes)
	c.HandlerTimeout = durationOr(c.HandlerTimeout, 10*time.Second)
	c.RetryMin = durationOr(c.RetryMin, 100*time.Millisecond)
	c.RetryMax = durationOr(c.RetryMax, 5*time.Second)
	c.SessionTimeout = durationOr(c.SessionTimeout, 10*time.Second)
	c.HeartbeatInterval = durationOr(c.HeartbeatInterval, time.Second)
	c.RebalanceTimeout = durationOr(c.RebalanceTimeout, 30*time.Second)
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return nil
}

// Consumer runs a member of a consumer group: one goroutine per assigned
// partition, each reading from the offset the store committed and handing
// batches to the Handler. Kafka's committed offsets serve lag tools, and tell
// that the store went back in time: they are committed only after the store,
// so a store behind them was restored, failed over or reset.
type Consumer struct {
	cfg     ConsumerConfig
	offsets OffsetStore
	h       Handler
	log     *slog.Logger
}

// NewConsumer checks cfg; Run joins the group.
func NewConsumer(cfg ConsumerConfig, offsets OffsetStore, h Handler) (*Consumer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if offsets == nil || h == nil {
		return nil, errors.New("kafka consumer: offset store and handler are required")
	}
	log := cfg.Log.With("topic", cfg.Topic, "group", cfg.Group)
	return &Consumer{cfg: cfg, offsets: offsets, h: h, log: log}, nil
}

// Run consumes until ctx ends, then finishes the batches in flight, leaves
// the group and returns nil. Errors joining the group are logged and
// retried: a worker waits for Kafka rather than exiting.
func (c *Consumer) Run(ctx context.Context) error {
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                c.cfg.Group,
		Brokers:           c.cfg.Brokers,
		Dialer:            c.cfg.Security.dialer(),
		Topics:            []string{c.cfg.Topic},
		SessionTimeout:    c.cfg.SessionTimeout,
		HeartbeatInterval: c.cfg.HeartbeatInterval,
		RebalanceTimeout:  c.cfg.RebalanceTimeout,
		JoinGroupBackoff:  time.Second,
		// A new partition (the topic grown) triggers a rebalance.
		WatchPartitionChanges: true,
		StartOffset:           kafka.FirstOffset,
		Logger:                kafkaLogger(c.log, slog.LevelDebug),
		ErrorLogger:           kafkaLogger(c.log, slog.LevelWarn),
	})
	if err != nil {
		return fmt.Errorf("consumer group: %w", err)
	}
	dlq := &kafka.Writer{
		Addr:         kafka.TCP(c.cfg.Brokers...),
		Topic:        c.cfg.DLQTopic,
		Balancer:     kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		Transport:    c.cfg.Security.transport(),
	}
	defer func() {
		dlq.Close()
		dlq.Transport.(*kafka.Transport).CloseIdleConnections()
	}()

	// Close ends the current generation, waits for its partitions to finish
	// their batches, and leaves the group so the others rebalance at once.
	defer group.Close()
	for {
		gen, err := group.Next(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			c.log.WarnContext(ctx, "join consumer group", "err", err)
			continue
		}
		c.log.InfoContext(ctx, "consumer group generation", "generation", gen.ID,
			"member", gen.MemberID, "partitions", partitionIDs(gen.Assignments[c.cfg.Topic]))
		gen.Start(func(gctx context.Context) { c.runGeneration(ctx, gctx, gen, dlq) })
	}
}

// runGeneration runs the partitions of one generation until it ends (a
// rebalance or Run's ctx). Returning ends the generation, so it returns only
// then, even when every partition stopped early.
func (c *Consumer) runGeneration(ctx, gctx context.Context, gen *kafka.Generation, dlq *kafka.Writer) {
	// Stop on either: the generation is over, or the whole consumer is.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(gctx, cancel)
	defer stop()

	assigned := gen.Assignments[c.cfg.Topic]
	if len(assigned) == 0 {
		<-pctx.Done()
		return
	}
	stored, err := c.storedOffsets(pctx)
	if err != nil {
		return // the generation ended while the store was unreachable
	}
	com := newCommitter(gen, c.cfg.Topic, c.log)
	var wg sync.WaitGroup
	for _, a := range assigned {
		p := newPartition(c, a.ID, c.startOffset(pctx, a, stored), dlq, com, gen)
		wg.Go(func() { p.run(pctx) })
	}
	<-pctx.Done()
	wg.Wait()
	com.close()
	if obs := c.cfg.Observer; obs != nil {
		for _, a := range assigned {
			obs.Revoked(c.cfg.Topic, a.ID)
		}
	}
}

// startOffset is where a newly assigned partition starts: the store's
// offset, or, when the store has none, the first retained record (a store
// with no offset behind a group that committed one was reset or replaced:
// starting at the group's offset would skip what Kafka still holds). a.Offset
// is the group's committed offset, negative when it has none.
func (c *Consumer) startOffset(ctx context.Context, a kafka.PartitionAssignment, stored map[int]int64) int64 {
	start, ok := stored[a.ID]
	switch {
	case ok && a.Offset > start:
		c.log.ErrorContext(ctx, "the store is behind the offset the group committed after it: it went back in time "+
			"(a restore, a failover that lost commits); consuming again from the store's offset",
			"partition", a.ID, "stored", start, "group", a.Offset)
	case !ok && a.Offset >= 0:
		c.log.ErrorContext(ctx, "the store has no offset for a partition the group committed: it is new or was reset; "+
			"consuming the partition from its first retained record", "partition", a.ID, "group", a.Offset)
	}
	if !ok {
		return kafka.FirstOffset
	}
	return start
}

// storedOffsets reads the store's offsets, retrying while ctx lasts: reading
// from anywhere else could count records twice.
func (c *Consumer) storedOffsets(ctx context.Context) (map[int]int64, error) {
	var out map[int]int64
	err := retry(ctx, c.cfg.RetryMin, c.cfg.RetryMax, func(attempt int) error {
		actx, cancel := context.WithTimeout(ctx, c.cfg.HandlerTimeout)
		defer cancel()
		var err error
		out, err = c.offsets.Offsets(actx, c.cfg.Topic)
		if err != nil {
			c.log.WarnContext(ctx, "read stored offsets", "err", err, "attempt", attempt)
		}
		return err
	})
	return out, err
}

// offsetCommitter is the part of a group generation the partitions use:
// the coordinator accepts a commit only from a member of the current
// generation.
type offsetCommitter interface {
	CommitOffsets(offsets map[string]map[int]int64) error
}

// committer commits processed offsets to the group, coalescing the commits
// of all partitions: they serve lag tools only, so one request for many
// batches is enough.
type committer struct {
	gen   offsetCommitter
	topic string
	log   *slog.Logger

	mu      sync.Mutex
	pending map[int]int64
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newCommitter(gen offsetCommitter, topic string, log *slog.Logger) *committer {
	c := &committer{
		gen: gen, topic: topic, log: log,
		pending: map[int]int64{},
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go c.loop()
	return c
}

// mark records that partition's records before next are stored.
func (c *committer) mark(partition int, next int64) {
	c.mu.Lock()
	c.pending[partition] = next
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *committer) loop() {
	defer close(c.done)
	for {
		select {
		case <-c.wake:
			c.flush()
		case <-c.stop:
			c.flush()
			return
		}
	}
}

func (c *committer) flush() {
	c.mu.Lock()
	offs := c.pending
	c.pending = make(map[int]int64, len(offs))
	c.mu.Unlock()
	if len(offs) == 0 {
		return
	}
	if err := c.gen.CommitOffsets(map[string]map[int]int64{c.topic: offs}); err != nil {
		// The store holds the truth; a lost commit only delays lag figures.
		c.log.Debug("commit offsets to kafka", "err", err)
	}
}

// close commits what is pending and stops the loop.
func (c *committer) close() {
	close(c.stop)
	<-c.done
}

// newBackOff waits about lo, doubling up to about hi, each wait drawn within
// ±25% so that workers failing together do not retry in step.
func newBackOff(lo, hi time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{InitialInterval: lo, RandomizationFactor: 0.25, Multiplier: 2, MaxInterval: hi}
	b.Reset()
	return b
}

// retry calls fn until it succeeds or ctx ends, backing off exponentially
// between lo and hi. process.ErrFenced is final: it is returned at once.
func retry(ctx context.Context, lo, hi time.Duration, fn func(attempt int) error) error {
	attempt := 0
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		last = fn(attempt)
		if errors.Is(last, process.ErrFenced) {
			return struct{}{}, backoff.Permanent(last)
		}
		return struct{}{}, last
	}, backoff.WithBackOff(newBackOff(lo, hi)), backoff.WithMaxElapsedTime(0)) // never give up
	if err != nil && ctx.Err() != nil && !errors.Is(err, last) {
		return fmt.Errorf("%w (last error: %w)", err, last)
	}
	return err
}

func partitionIDs(as []kafka.PartitionAssignment) []int {
	ids := make([]int, len(as))
	for i, a := range as {
		ids[i] = a.ID
	}
	return ids
}

// kafkaLogger routes kafka-go's printf logging to slog.
func kafkaLogger(log *slog.Logger, level slog.Level) kafka.Logger {
	return kafka.LoggerFunc(func(msg string, args ...any) {
		if log.Enabled(context.Background(), level) {
			log.Log(context.Background(), level, fmt.Sprintf(msg, args...), "component", "kafka-go")
		}
	})
}
