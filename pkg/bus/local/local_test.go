package local

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// slowProc records each commit; gate holds commits until released.
type slowProc struct {
	mu      sync.Mutex
	groups  []int
	gate    chan struct{}
	entered chan struct{} // told when a commit starts, if set
	err     error
}

func (p *slowProc) Process(_ context.Context, events []event.Event, _ int, _ *process.Offset) (process.Result, error) {
	if p.entered != nil {
		p.entered <- struct{}{}
	}
	if p.gate != nil {
		<-p.gate
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.groups = append(p.groups, len(events))
	return process.Result{Received: len(events)}, p.err
}

func evs(n int, prefix string) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = event.Event{Topic: "t", EventID: fmt.Sprintf("%s-%d", prefix, i)}
	}
	return out
}

// TestGroupCommit: requests that arrive while a commit runs share the next
// one, and every request returns only after its commit.
func TestGroupCommit(t *testing.T) {
	p := &slowProc{gate: make(chan struct{})}
	b := New(p, 64, 1000)
	defer b.Close()
	var wg sync.WaitGroup
	p.entered = make(chan struct{}, 100)
	errs := make(chan error, 21)
	wg.Go(func() { errs <- b.Publish(t.Context(), evs(1, "first")) })
	<-p.entered // the first request is being committed
	for i := range 20 {
		wg.Go(func() { errs <- b.Publish(t.Context(), evs(10, fmt.Sprint(i))) })
	}
	waitQueue(t, b, 20)
	close(p.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for _, g := range p.groups {
		total += g
	}
	if total != 201 {
		t.Fatalf("committed %d events, want 201", total)
	}
	if len(p.groups) > 3 {
		t.Errorf("%d commits for 21 requests: %v; queued requests were not grouped", len(p.groups), p.groups)
	}
}

func TestMaxBatchBoundsAGroup(t *testing.T) {
	p := &slowProc{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	b := New(p, 64, 25)
	var wg sync.WaitGroup
	wg.Go(func() { _ = b.Publish(t.Context(), evs(1, "first")) })
	<-p.entered
	for i := range 10 {
		wg.Go(func() { _ = b.Publish(t.Context(), evs(10, fmt.Sprint(i))) })
	}
	waitQueue(t, b, 10)
	close(p.gate)
	wg.Wait()
	b.Close()
	for _, g := range p.groups {
		if g > 25+10 { // a group stops growing once it reaches maxBatch
			t.Fatalf("group of %d events, bound 25: %v", g, p.groups)
		}
	}
}

func TestCommitErrorReachesEveryRequest(t *testing.T) {
	p := &slowProc{err: errors.New("disk full")}
	b := New(p, 8, 100)
	defer b.Close()
	if err := b.Publish(t.Context(), evs(3, "x")); err == nil {
		t.Fatal("a failed commit was reported as success")
	}
}

func TestBackpressureTimesOut(t *testing.T) {
	p := &slowProc{gate: make(chan struct{}), entered: make(chan struct{}, 2)}
	b := New(p, 1, 100)
	defer func() { close(p.gate); b.Close() }()
	go func() { _ = b.Publish(context.Background(), evs(1, "a")) }() // being committed, blocked
	<-p.entered
	go func() { _ = b.Publish(context.Background(), evs(1, "b")) }() // fills the queue
	waitQueue(t, b, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := b.Publish(ctx, evs(1, "c")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish on a full queue: %v, want a deadline error", err)
	}
}

func TestCloseDrainsAndRefuses(t *testing.T) {
	p := &slowProc{}
	b := New(p, 8, 100)
	if err := b.Publish(t.Context(), evs(2, "a")); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := b.Publish(t.Context(), evs(1, "b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v, want ErrClosed", err)
	}
}

func waitQueue(t *testing.T, b *Bus, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(b.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued after 10 s, want %d", len(b.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}
