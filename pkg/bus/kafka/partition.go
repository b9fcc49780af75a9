package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
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
	// carry is a record fetched past the byte budget of the last batch: the
	// first of the next one. Cleared whenever the reader moves.
	carry *kafka.Message
	// fenceWait paces resuming after a fence whose ownership check failed,
	// growing each time until a batch commits.
	fenceWait *backoff.ExponentialBackOff
}

func newPartition(c *Consumer, id int, start int64, dlq *kafka.Writer, com *committer, gen offsetCommitter) *partition {
	next := start
	if next < 0 {
		next = -1
	}
	return &partition{
		c: c, id: id, start: start, next: next, dlq: dlq, com: com, gen: gen,
		log:       c.log.With("partition", id),
		buf:       make([]kafka.Message, 0, c.cfg.BatchSize),
		fenceWait: newBackOff(c.cfg.RetryMin, c.cfg.RetryMax),
	}
}

// run reads and handles batches until ctx ends or another consumer owns
// the partition. A batch being handled when ctx ends is finished first.
func (p *partition) run(ctx context.Context) {
	p.log.DebugContext(ctx, "partition assigned", "start", p.start)
	p.open(p.start)
	defer func() { p.reader.Close() }()
	wait := newBackOff(p.c.cfg.RetryMin, p.c.cfg.RetryMax)
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
			if !sleep(ctx, wait.NextBackOff()) {
				return
			}
			p.reader.Close()
			p.open(at)
			continue
		}
		wait.Reset()
		err = p.handle(ctx, msgs)
		switch {
		case err == nil:
			p.fenceWait.Reset()
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
	p.carry = nil
	p.reader = kafka.NewReader(kafka.ReaderConfig{
		Brokers:   p.c.cfg.Brokers,
		Dialer:    p.c.cfg.Security.dialer(),
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
	dialer := p.c.cfg.Security.dialer()
	for _, b := range p.c.cfg.Brokers {
		if conn, err = dialer.DialLeader(ctx, "tcp", b, p.c.cfg.Topic, p.id); err == nil {
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
// or until the batch is full (BatchSize records or BatchBytes). The slice is
// reused by the next fetch.
func (p *partition) fetch(ctx context.Context) ([]kafka.Message, error) {
	cfg := &p.c.cfg
	msgs := p.buf[:0]
	if p.carry != nil {
		msgs = append(msgs, *p.carry)
		p.carry = nil
	}
	for len(msgs) == 0 {
		m, err := p.reader.FetchMessage(ctx)
		if err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		if p.next < 0 || m.Offset >= p.next {
			msgs = append(msgs, m)
		}
	}
	size := recordSize(&msgs[0])
	lctx, cancel := context.WithTimeout(ctx, cfg.BatchLinger)
	defer cancel()
	for len(msgs) < cfg.BatchSize && size < cfg.BatchBytes {
		m, err := p.reader.FetchMessage(lctx)
		if err != nil {
			if lctx.Err() != nil {
				break // lingered long enough
			}
			return nil, fmt.Errorf("fetch: %w", err)
		}
		n := recordSize(&m)
		if size+n > cfg.BatchBytes {
			p.carry = &m // the reader cannot unread it
			break
		}
		size += n
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
	off := process.Offset{Topic: cfg.Topic, Partition: p.id, From: from, Next: msgs[len(msgs)-1].Offset + 1,
		First: p.next < 0}

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
// stored: a crash in between sends them again, it never loses them. It
// writes them all at once, and when that fails, those not written one at a
// time, so that a record the topic refuses for good cannot hold back the
// others or its partition.
func (p *partition) sendToDLQ(ctx context.Context, recs []kafka.Message) error {
	cfg := &p.c.cfg
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.HandlerTimeout)
	err := p.dlq.WriteMessages(actx, recs...)
	cancel()
	written := len(recs)
	if err != nil {
		p.log.WarnContext(ctx, "write to the dead-letter topic failed; writing one record at a time", "err", err)
		failed := unwritten(recs, err)
		written -= len(failed)
		for i := range failed {
			ok, err := p.deadLetterOne(ctx, failed[i])
			if err != nil {
				return fmt.Errorf("dead-letter the record of offset %s: %w",
					headerValue(failed[i].Headers, HeaderDLQOffset), err)
			}
			if ok {
				written++
			}
		}
	}
	p.log.WarnContext(ctx, "poison records dead-lettered", "count", written, "dlq", cfg.DLQTopic,
		"first_offset", headerValue(recs[0].Headers, HeaderDLQOffset),
		"reason", headerValue(recs[0].Headers, HeaderDLQReason))
	if obs := cfg.Observer; obs != nil && written > 0 {
		obs.DeadLettered(cfg.Topic, p.id, written)
	}
	return nil
}

// deadLetterOne writes one dead-letter record, retrying until it is written
// or ctx ends. A record the topic refuses for good (too large, invalid) is
// replaced by a stub with less and less of it; ok is false when not even an
// empty stub is accepted and the record is given up.
func (p *partition) deadLetterOne(ctx context.Context, rec kafka.Message) (ok bool, err error) {
	cfg := &p.c.cfg
	orig := rec
	keep := []int{maxStubValue, 0} // the value bytes each successive stub keeps
	ok = true
	err = retry(ctx, cfg.RetryMin, cfg.RetryMax, func(attempt int) error {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.HandlerTimeout)
		defer cancel()
		err := p.dlq.WriteMessages(actx, rec)
		switch {
		case err == nil:
			return nil
		case !refusedForGood(err):
			p.log.WarnContext(ctx, "write to the dead-letter topic failed; retrying", "err", err, "attempt", attempt)
			return err
		case len(keep) == 0:
			p.log.ErrorContext(ctx, "the dead-letter topic refuses even an empty stub; record given up", "err", err,
				"offset", headerValue(orig.Headers, HeaderDLQOffset), "size", recordSize(&orig))
			ok = false
			return nil
		}
		p.log.WarnContext(ctx, "the dead-letter topic refuses the record; writing a stub", "err", err,
			"offset", headerValue(orig.Headers, HeaderDLQOffset), "size", recordSize(&orig), "keep", keep[0])
		rec = stub(&orig, err, keep[0])
		keep = keep[1:]
		return err
	})
	return ok, err
}

// unwritten returns the records of recs that err says were not written:
// those with an error of their own, else all of them.
func unwritten(recs []kafka.Message, err error) []kafka.Message {
	var werrs kafka.WriteErrors
	if !errors.As(err, &werrs) || len(werrs) != len(recs) {
		return recs
	}
	var out []kafka.Message
	for i, e := range werrs {
		if e != nil {
			out = append(out, recs[i])
		}
	}
	return out
}

// refusedForGood reports whether a write of one record failed in a way no
// retry can fix: the record itself is refused.
func refusedForGood(err error) bool {
	err = firstWriteError(err)
	// kafka.MessageTooLargeError, the writer's own check, unwraps to
	// MessageSizeTooLarge.
	return errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge) ||
		errors.Is(err, kafka.InvalidRecord)
}

// resync decides what a fenced batch means. The group coordinator refuses
// a commit from a member whose generation is over: then another consumer
// owns the partition and this one stops. Otherwise resume where the store
// says: when the commit is accepted this consumer is the owner and a stale
// one wrote ahead (or its own commit's outcome was lost); when the commit
// fails for another reason (coordinator moved, connection lost) ownership is
// unknown, and resuming is still safe, as the store fences whoever is stale.
// Stopping then would leave the partition unread until the next rebalance.
func (p *partition) resync(ctx context.Context) bool {
	stored, err := p.c.storedOffsets(ctx)
	if err != nil {
		return false
	}
	next, ok := stored[p.id]
	if !ok {
		// Only a partition's first batch may record an offset where none
		// is: the store was reset or replaced under this consumer.
		p.log.ErrorContext(ctx, "fenced: the store has no offset for the partition, it is new or was reset; "+
			"consuming the partition again from its first retained record", "was", p.next)
		p.next = -1
		p.carry = nil
		return p.reader.SetOffset(kafka.FirstOffset) == nil
	}
	if next < p.next {
		// Offsets only move forward in the store: it lost commits.
		p.log.ErrorContext(ctx, "fenced: the store is behind the offset it recorded for this consumer, it went back "+
			"in time (a restore, a failover that lost commits); consuming again from the store's offset",
			"was", p.next, "next", next)
	}
	err = p.gen.CommitOffsets(map[string]map[int]int64{p.c.cfg.Topic: {p.id: next}})
	switch {
	case err == nil:
		p.log.WarnContext(ctx, "partition fenced by a stale write; resuming from the stored offset",
			"was", p.next, "next", next)
	case ownedElsewhere(err):
		p.log.InfoContext(ctx, "partition fenced: another consumer owns it; stopping", "err", err)
		return false
	default:
		// A pause, so that a member that lost the partition unnoticed
		// does not race its owner batch after batch.
		p.log.WarnContext(ctx, "partition fenced and ownership unconfirmed; resuming from the stored offset",
			"err", err, "was", p.next, "next", next)
		if !sleep(ctx, p.fenceWait.NextBackOff()) {
			return false
		}
	}
	p.next = next
	p.carry = nil
	if err := p.reader.SetOffset(next); err != nil {
		return false
	}
	return true
}

// firstWriteError is the first record error of kafka-go's per-record error
// list (which does not unwrap), or err itself.
func firstWriteError(err error) error {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		for _, e := range werrs {
			if e != nil {
				return e
			}
		}
	}
	return err
}

// ownedElsewhere reports whether a commit error proves that this member's
// generation is over, so that another member owns its partitions.
func ownedElsewhere(err error) bool {
	return errors.Is(err, kafka.IllegalGeneration) || errors.Is(err, kafka.UnknownMemberId) ||
		errors.Is(err, kafka.RebalanceInProgress) || errors.Is(err, kafka.FencedInstanceID)
}

// headerValue returns the value of the last header named key: the
// dead-letter headers follow any the record already had (one replayed from
// the dead-letter topic, say).
func headerValue(hs []kafka.Header, key string) string {
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Key == key {
			return string(hs[i].Value)
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
