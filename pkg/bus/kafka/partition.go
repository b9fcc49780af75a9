package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// partition consumes one assigned partition for one generation.
type partition struct {
	c      *Consumer
	id     int
	start  int64 // first offset to read, or kafka.FirstOffset
	next   int64 // the offset the store expects next; -1 until known
	dlq    *kafka.Writer
	com    *committer
	gen    offsetCommitter
	log    *slog.Logger
	reader *kafka.Reader
	buf    []kafka.Message
}

func newPartition(c *Consumer, id int, start int64, dlq *kafka.Writer, com *committer, gen offsetCommitter) *partition {
	next := start
	if next < 0 {
		next = -1
	}
	return &partition{
		c: c, id: id, start: start, next: next, dlq: dlq, com: com, gen: gen,
		log: c.log.With("partition", id),
		buf: make([]kafka.Message, 0, c.cfg.BatchSize),
	}
}

// run reads and handles batches until ctx ends or another consumer owns
// the partition. A batch being handled when ctx ends is finished first.
func (p *partition) run(ctx context.Context) {
	p.log.DebugContext(ctx, "partition assigned", "start", p.start)
	p.open(p.start)
	defer func() { p.reader.Close() }()
	wait := p.c.cfg.RetryMin
	for ctx.Err() == nil {
		msgs, err := p.fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// The reader gives up after a few attempts (broker down,
			// leader moved): start a fresh one where the store expects.
			at := p.resumeAt()
			if errors.Is(err, kafka.OffsetOutOfRange) {
				at = p.outOfRange(ctx, at)
			} else {
				p.log.WarnContext(ctx, "fetch records", "err", err)
			}
			if !sleep(ctx, wait) {
				return
			}
			wait = min(wait*2, p.c.cfg.RetryMax)
			p.reader.Close()
			p.open(at)
			continue
		}
		wait = p.c.cfg.RetryMin
		err = p.handle(ctx, msgs)
		switch {
		case err == nil:
		case errors.Is(err, process.ErrFenced):
			if !p.resync(ctx) {
				return
			}
		default:
			return // revoked while the batch was failing: the next owner retries it
		}
	}
}

func (p *partition) open(offset int64) {
	p.reader = kafka.NewReader(kafka.ReaderConfig{
		Brokers:   p.c.cfg.Brokers,
		Topic:     p.c.cfg.Topic,
		Partition: p.id,
		MinBytes:  1,
		MaxBytes:  8 << 20,
		// A short long-poll keeps Close (on revoke) prompt.
		MaxWait:       500 * time.Millisecond,
		QueueCapacity: p.c.cfg.BatchSize,
		// Lag comes from each fetch's high watermark; no polling for it.
		ReadLagInterval: -1,
		ErrorLogger:     kafkaLogger(p.log, slog.LevelWarn),
		// Reported, not retried silently forever: see outOfRange.
		OffsetOutOfRangeError: true,
	})
	// Never fails on a fresh reader.
	_ = p.reader.SetOffset(offset)
}

// outOfRange picks where to read when offset is not in the log. Before its
// start, the records expired unconsumed: nothing can bring them back, so
// reading resumes at the first offset (the store's chain of offsets goes on
// from where it was). Past its end (a new or truncated topic), waiting is
// the only move that cannot skip a record.
func (p *partition) outOfRange(ctx context.Context, offset int64) int64 {
	first, last, err := p.bounds(ctx)
	switch {
	case err != nil:
		p.log.WarnContext(ctx, "offset out of range; reading the log bounds failed", "offset", offset, "err", err)
	case offset < first:
		p.log.ErrorContext(ctx, "records expired before they were consumed; resuming at the first offset",
			"offset", offset, "first", first, "lost", first-offset)
		return first
	default:
		p.log.WarnContext(ctx, "offset past the end of the log; waiting for records",
			"offset", offset, "end", last)
	}
	return offset
}

// bounds returns the first offset of the partition and its end.
func (p *partition) bounds(ctx context.Context) (first, last int64, err error) {
	var conn *kafka.Conn
	for _, b := range p.c.cfg.Brokers {
		if conn, err = kafka.DialLeader(ctx, "tcp", b, p.c.cfg.Topic, p.id); err == nil {
			break
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("dial leader: %w", err)
	}
	defer conn.Close()
	first, last, err = conn.ReadOffsets()
	if err != nil {
		return 0, 0, fmt.Errorf("read offsets: %w", err)
	}
	return first, last, nil
}

func (p *partition) resumeAt() int64 {
	if p.next >= 0 {
		return p.next
	}
	return p.start
}

// fetch waits for a first record, then gathers more for up to BatchLinger
// or until the batch is full. The slice is reused by the next fetch.
func (p *partition) fetch(ctx context.Context) ([]kafka.Message, error) {
	msgs := p.buf[:0]
	for len(msgs) == 0 {
		m, err := p.reader.FetchMessage(ctx)
		if err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		if p.next < 0 || m.Offset >= p.next {
			msgs = append(msgs, m)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, p.c.cfg.BatchLinger)
	defer cancel()
	for len(msgs) < p.c.cfg.BatchSize {
		m, err := p.reader.FetchMessage(lctx)
		if err != nil {
			if lctx.Err() != nil {
				break // lingered long enough
			}
			return nil, fmt.Errorf("fetch: %w", err)
		}
		msgs = append(msgs, m)
	}
	if err := ctx.Err(); err != nil {
		return nil, err // revoked: the records go to the next owner unhandled
	}
	p.buf = msgs
	return msgs, nil
}

// handle dead-letters the poison records, then hands the batch to the
// handler until it succeeds, is fenced, or ctx ends.
func (p *partition) handle(ctx context.Context, msgs []kafka.Message) error {
	cfg := &p.c.cfg
	from := p.next
	if from < 0 {
		from = msgs[0].Offset
	}
	// From is where the previous batch ended, not the first record's
	// offset: a gap in the log (compaction, expired segments) must not
	// break the store's chain of offsets.
	off := process.Offset{Topic: cfg.Topic, Partition: p.id, From: from, Next: msgs[len(msgs)-1].Offset + 1}

	events := make([]event.Event, 0, len(msgs))
	var poison []kafka.Message
	for i := range msgs {
		e, err := Decode(msgs[i].Value)
		if err != nil {
			poison = append(poison, deadLetter(&msgs[i], err))
			continue
		}
		events = append(events, e)
	}
	if len(poison) > 0 {
		if err := p.sendToDLQ(ctx, poison); err != nil {
			return err
		}
	}

	hctx, finish := ctx, func(error) {}
	if cfg.Hook != nil {
		hctx, finish = cfg.Hook(ctx, msgs)
	}
	err := retry(ctx, cfg.RetryMin, cfg.RetryMax, func(attempt int) error {
		// Detached from ctx: an attempt in flight when the partition is
		// revoked commits or fails as a whole, then the loop stops.
		actx, cancel := context.WithTimeout(context.WithoutCancel(hctx), cfg.HandlerTimeout)
		defer cancel()
		err := p.c.h.HandleBatch(actx, p.id, events, off)
		if err != nil && !errors.Is(err, process.ErrFenced) {
			p.log.WarnContext(ctx, "handle batch failed; retrying", "err", err, "attempt", attempt,
				"from", off.From, "next", off.Next)
		}
		return err
	})
	finish(err)
	if err != nil {
		return fmt.Errorf("handle batch [%d, %d): %w", off.From, off.Next, err)
	}
	p.next = off.Next
	p.com.mark(p.id, off.Next)
	if obs := cfg.Observer; obs != nil {
		obs.Lag(cfg.Topic, p.id, p.reader.Lag())
	}
	return nil
}

// sendToDLQ writes poison records to the DLQ topic before the batch is
// stored: a crash in between sends them again, it never loses them.
func (p *partition) sendToDLQ(ctx context.Context, recs []kafka.Message) error {
	cfg := &p.c.cfg
	err := retry(ctx, cfg.RetryMin, cfg.RetryMax, func(attempt int) error {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.HandlerTimeout)
		defer cancel()
		err := p.dlq.WriteMessages(actx, recs...)
		if err != nil {
			p.log.WarnContext(ctx, "write to the dead-letter topic failed; retrying", "err", err, "attempt", attempt)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("dead-letter %d records: %w", len(recs), err)
	}
	p.log.WarnContext(ctx, "poison records dead-lettered", "count", len(recs), "dlq", cfg.DLQTopic,
		"first_offset", headerValue(recs[0].Headers, HeaderDLQOffset),
		"reason", headerValue(recs[0].Headers, HeaderDLQReason))
	if obs := cfg.Observer; obs != nil {
		obs.DeadLettered(cfg.Topic, p.id, len(recs))
	}
	return nil
}

// resync decides what a fenced batch means. The group coordinator refuses
// a commit from a member whose generation is over: then another consumer
// owns the partition and this one stops. When the commit is accepted this
// consumer is the owner and a stale one wrote ahead: resume where the store
// says.
func (p *partition) resync(ctx context.Context) bool {
	stored, err := p.c.storedOffsets(ctx)
	if err != nil {
		return false
	}
	next, ok := stored[p.id]
	if !ok {
		p.log.ErrorContext(ctx, "fenced, yet the store has no offset for the partition; stopping it")
		return false
	}
	if err := p.gen.CommitOffsets(map[string]map[int]int64{p.c.cfg.Topic: {p.id: next}}); err != nil {
		p.log.InfoContext(ctx, "partition fenced: another consumer owns it; stopping", "err", err)
		return false
	}
	p.log.WarnContext(ctx, "partition fenced by a stale consumer; resuming from the stored offset",
		"was", p.next, "next", next)
	p.next = next
	if err := p.reader.SetOffset(next); err != nil {
		return false
	}
	return true
}

func headerValue(hs []kafka.Header, key string) string {
	for _, h := range hs {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
