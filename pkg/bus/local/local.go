// Package local is the in-process bus of the all-in-one mode. Concurrent
// publish requests are grouped into one store transaction (group commit), so
// the single SQLite writer pays one commit for many requests.
package local

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/trace"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// Processor is the processing core as the bus uses it.
type Processor interface {
	Process(ctx context.Context, events []event.Event, shard int, off *process.Offset) (process.Result, error)
}

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("bus closed")

// Bus commits published events through a Processor, many requests at a time.
type Bus struct {
	proc     Processor
	maxBatch int
	queue    chan *request
	quit     chan struct{}
	done     chan struct{}
}

type request struct {
	events []event.Event
	span   trace.SpanContext // the publish request's, for the batch span
	result chan error
}

// New starts a bus. queue bounds the waiting requests (backpressure);
// maxBatch bounds the events of one transaction.
func New(proc Processor, queue, maxBatch int) *Bus {
	b := &Bus{
		proc: proc, maxBatch: maxBatch,
		queue: make(chan *request, queue),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go b.run()
	return b
}

// Publish returns once the events are committed, or with an error when the
// queue stays full or the commit fails until ctx ends.
func (b *Bus) Publish(ctx context.Context, events []event.Event) error {
	r := &request{events: events, span: trace.SpanContextFromContext(ctx), result: make(chan error, 1)}
	select {
	case <-b.quit:
		return ErrClosed
	default:
	}
	select {
	case b.queue <- r:
	case <-b.quit:
		return ErrClosed
	case <-ctx.Done():
		return fmt.Errorf("wait for the committer: %w", ctx.Err())
	}
	select {
	case err := <-r.result:
		return err
	case <-ctx.Done():
		// The commit may still happen: the client cannot know, retries,
		// and dedup makes the retry safe.
		return fmt.Errorf("wait for the commit: %w", ctx.Err())
	}
}

// Close stops accepting, commits what is queued and returns when done. Call
// it after the HTTP server stopped sending requests.
func (b *Bus) Close() {
	close(b.quit)
	<-b.done
}

func (b *Bus) run() {
	defer close(b.done)
	var group []*request
	var events []event.Event
	for {
		var first *request
		select {
		case first = <-b.queue:
		case <-b.quit:
			// Drain what was queued before Close.
			for {
				select {
				case r := <-b.queue:
					b.commit([]*request{r}, r.events)
				default:
					return
				}
			}
		}
		group = append(group[:0], first)
		events = append(events[:0], first.events...)
	fill:
		for len(events) < b.maxBatch {
			select {
			case r := <-b.queue:
				group = append(group, r)
				events = append(events, r.events...)
			default:
				break fill
			}
		}
		b.commit(group, events)
	}
}

func (b *Bus) commit(group []*request, events []event.Event) {
	// The commit is not bound to any one request's context: once started it
	// finishes, so an answer is never "failed" for events that were stored.
	_, err := b.proc.Process(batchContext(group), events, 0, nil)
	for _, r := range group {
		r.result <- err
	}
	clear(events) // drop references to request bodies
}

// batchContext carries the trace of the requests a batch commits: the first
// traced request is the batch span's parent (its trace shows the commit),
// the others are links. No request's cancellation comes along.
func batchContext(group []*request) context.Context {
	ctx := context.Background()
	var links []trace.Link
	for _, r := range group {
		switch {
		case !r.span.IsValid():
		case !trace.SpanContextFromContext(ctx).IsValid():
			ctx = trace.ContextWithSpanContext(ctx, r.span)
		default:
			links = append(links, trace.Link{SpanContext: r.span})
		}
	}
	if len(links) > 0 {
		ctx = process.ContextWithLinks(ctx, links)
	}
	return ctx
}
