// Package groupcommit is the single writer of an embedded store: concurrent
// Persist calls queue up and one goroutine commits every batch that waited
// in one transaction, so many callers share one commit (and one fsync).
package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// Commit writes a group of batches in one transaction and tells, for each,
// which of its events were new. It fails as a whole: on error nothing of
// the group is stored.
type Commit func(group []*process.Batch) ([]process.Persisted, error)

// ErrClosed is returned by Persist after Close.
var ErrClosed = errors.New("store closed")

// ErrOffset is returned by Persist for a batch that carries a Kafka offset:
// the embedded stores serve the all-in-one, which has no Kafka, so such a
// batch is a wiring mistake (a Kafka consumer needs the Postgres store,
// which keeps offsets), never data to store.
var ErrOffset = errors.New("embedded store keeps no consumer offsets: a batch with an offset needs the Postgres store")

// Sizes of a group.
const (
	QueueBatches = 4096   // batches waiting for the writer (backpressure)
	MaxGroupRows = 20_000 // events in one transaction, at most (a larger batch goes alone)
)

// Writer queues batches for one committing goroutine.
type Writer struct {
	commit    Commit
	queue     chan *pending
	closing   chan struct{}
	written   chan struct{} // closed when the writer has stopped
	closeOnce sync.Once
	commits   atomic.Int64
}

// pending is a batch waiting for the writer.
type pending struct {
	b     *process.Batch
	done  chan outcome
	state atomic.Int32 // queued, then taken by the writer or abandoned by the caller
}

// States of a pending batch.
const (
	queued int32 = iota
	taken
	abandoned
)

type outcome struct {
	persisted process.Persisted
	err       error
}

// New starts the writer.
func New(commit Commit) *Writer {
	w := &Writer{commit: commit, queue: make(chan *pending, QueueBatches),
		closing: make(chan struct{}), written: make(chan struct{})}
	go w.run()
	return w
}

// Queued is how many batches wait for the writer now.
func (w *Writer) Queued() int { return len(w.queue) }

// Commits is how many groups the writer has committed.
func (w *Writer) Commits() int64 { return w.commits.Load() }

// Close commits the batches already queued, then stops the writer.
func (w *Writer) Close() {
	w.closeOnce.Do(func() {
		close(w.closing)
		<-w.written
	})
}

// Persist queues the batch and waits for its group's outcome; a batch with
// an Offset is refused with ErrOffset before it is queued. A caller whose
// context ends before the writer took its batch leaves with nothing stored;
// once taken, the transaction is under way and bounded, and its outcome is
// the truth, so an error always means "not stored".
func (w *Writer) Persist(ctx context.Context, b *process.Batch) (process.Persisted, error) {
	if b.Offset != nil {
		return process.Persisted{}, fmt.Errorf("persist %s[%d]: %w", b.Offset.Topic, b.Offset.Partition, ErrOffset)
	}
	if err := ctx.Err(); err != nil {
		return process.Persisted{}, fmt.Errorf("persist: %w", err)
	}
	p := &pending{b: b, done: make(chan outcome, 1)}
	select {
	case <-w.closing:
		return process.Persisted{}, ErrClosed
	default:
	}
	select {
	case w.queue <- p:
	case <-w.closing:
		return process.Persisted{}, ErrClosed
	case <-ctx.Done():
		return process.Persisted{}, fmt.Errorf("wait for the writer: %w", ctx.Err())
	}
	select {
	case o := <-p.done:
		return o.persisted, o.err
	case <-ctx.Done():
		if p.state.CompareAndSwap(queued, abandoned) {
			return process.Persisted{}, fmt.Errorf("wait for the writer: %w", ctx.Err())
		}
	case <-w.written:
		// Queued as Close drained the queue: the writer is gone.
		if p.state.CompareAndSwap(queued, abandoned) {
			return process.Persisted{}, ErrClosed
		}
	}
	o := <-p.done
	return o.persisted, o.err
}

// run takes whatever batches are queued, up to MaxGroupRows events, and
// commits them together.
func (w *Writer) run() {
	defer close(w.written)
	var group []*pending
	for {
		var first *pending
		select {
		case first = <-w.queue:
		case <-w.closing:
			// Commit what was queued before Close.
			for {
				select {
				case p := <-w.queue:
					if p.state.CompareAndSwap(queued, taken) {
						w.answer([]*pending{p})
					}
				default:
					return
				}
			}
		}
		group = group[:0]
		rows := 0
		take := func(p *pending) {
			// A caller that gave up before its turn is skipped.
			if p.state.CompareAndSwap(queued, taken) {
				group = append(group, p)
				rows += len(p.b.Events)
			}
		}
		take(first)
	fill:
		for rows < MaxGroupRows {
			select {
			case p := <-w.queue:
				take(p)
			default:
				break fill
			}
		}
		if len(group) > 0 {
			w.answer(group)
		}
		clear(group) // drop references to the callers' batches
	}
}

// answer commits one group and answers every caller.
func (w *Writer) answer(group []*pending) {
	batches := make([]*process.Batch, len(group))
	for i, p := range group {
		batches[i] = p.b
	}
	outs, err := w.commit(batches)
	if err == nil {
		w.commits.Add(1)
	}
	for i, p := range group {
		if err != nil {
			p.done <- outcome{err: err}
			continue
		}
		p.done <- outcome{persisted: outs[i]}
	}
}
