package local

import (
	"context"
	"errors"
	"testing"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

type recordingProc struct {
	calls []int
	err   error
}

func (p *recordingProc) Process(_ context.Context, events []event.Event, shard int, off *process.Offset) (process.Result, error) {
	if shard != 0 || off != nil {
		return process.Result{}, errors.New("the all-in-one has one shard and no offsets")
	}
	p.calls = append(p.calls, len(events))
	return process.Result{Received: len(events)}, p.err
}

func TestPublishProcessesAndReportsErrors(t *testing.T) {
	p := &recordingProc{}
	b := New(p)
	if err := b.Publish(t.Context(), make([]event.Event, 3)); err != nil {
		t.Fatal(err)
	}
	p.err = errors.New("disk full")
	if err := b.Publish(t.Context(), make([]event.Event, 1)); !errors.Is(err, p.err) {
		t.Fatalf("Publish: %v, want the processor's error", err)
	}
	b.Close()
	if err := b.Publish(t.Context(), make([]event.Event, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
	if len(p.calls) != 2 || p.calls[0] != 3 {
		t.Fatalf("processor calls %v", p.calls)
	}
}
