// Package local is the in-process bus of the all-in-one mode: a published
// request is processed at once, in the request's own goroutine, so decoding,
// claiming and counting run on every core; the embedded store then groups
// the concurrent commits into one transaction.
package local

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// Processor is the processing core as the bus uses it.
type Processor interface {
	Process(ctx context.Context, events []event.Event, shard int, off *process.Offset) (process.Result, error)
}

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("bus closed")

// Bus hands published events to the Processor.
type Bus struct {
	proc   Processor
	closed atomic.Bool
}

// New returns a bus over proc.
func New(proc Processor) *Bus { return &Bus{proc: proc} }

// Publish returns once the events are committed (counter shard 0, no Kafka
// offset), or with the error that kept them from it.
func (b *Bus) Publish(ctx context.Context, events []event.Event) error {
	if b.closed.Load() {
		return ErrClosed
	}
	_, err := b.proc.Process(ctx, events, 0, nil)
	return err
}

// Close refuses later publishes; call it once the HTTP server has stopped.
func (b *Bus) Close() { b.closed.Store(true) }
