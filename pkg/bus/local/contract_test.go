package local_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/event-aggregator/event-aggregator/pkg/bus/local"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/ingest/ingesttest"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// collector is the processing core's place: it keeps what the bus hands it.
type collector struct {
	mu     sync.Mutex
	events []event.Event
}

func (c *collector) Process(_ context.Context, events []event.Event, _ int, _ *process.Offset) (process.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, events...)
	return process.Result{Received: len(events)}, nil
}

func TestContract(t *testing.T) {
	ingesttest.Run(t, func(t *testing.T) ingesttest.Subject {
		c := &collector{}
		b := local.New(c)
		return ingesttest.Subject{
			Publisher: b,
			Delivered: func(*testing.T) []event.Event {
				c.mu.Lock()
				defer c.mu.Unlock()
				return slices.Clone(c.events)
			},
			Close: func() error { b.Close(); return nil },
		}
	})
}
