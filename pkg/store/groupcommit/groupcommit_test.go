package groupcommit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// recorder is a Commit that records each group and can be held before it.
type recorder struct {
	mu      sync.Mutex
	groups  [][]*process.Batch
	entered chan struct{}
	hold    chan struct{}
	err     error
}

func newRecorder() *recorder {
	r := &recorder{entered: make(chan struct{}, 100), hold: make(chan struct{})}
	close(r.hold)
	return r
}

func (r *recorder) commit(group []*process.Batch) ([]process.Persisted, error) {
	r.entered <- struct{}{}
	<-r.hold
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	r.groups = append(r.groups, group)
	outs := make([]process.Persisted, len(group))
	for i, b := range group {
		outs[i].New = make([]bool, len(b.Events))
		for j := range outs[i].New {
			outs[i].New[j] = j%2 == 0 // something per batch to tell callers apart
		}
	}
	return outs, nil
}

func batch(n int) *process.Batch { return &process.Batch{Events: make([]event.Event, n)} }

func waitQueued(t *testing.T, w *Writer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d batches queued after 10 s, want %d", w.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdNext makes the next commit wait until release.
func (r *recorder) holdNext() (release func()) {
	r.hold = make(chan struct{})
	var once sync.Once
	return func() { once.Do(func() { close(r.hold) }) }
}

// TestBatchesQueuedMeanwhileShareOneCommit: while one group commits, the
// batches that arrive wait and then go together, each caller getting its
// own batch's answer.
func TestBatchesQueuedMeanwhileShareOneCommit(t *testing.T) {
	r := newRecorder()
	release := r.holdNext()
	w := New(r.commit)
	defer w.Close()
	first := make(chan error, 1)
	go func() { _, err := w.Persist(t.Context(), batch(1)); first <- err }()
	<-r.entered
	var wg sync.WaitGroup
	sizes := []int{2, 3, 4}
	got := make([]process.Persisted, len(sizes))
	for i, n := range sizes {
		wg.Go(func() {
			var err error
			if got[i], err = w.Persist(t.Context(), batch(n)); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, w, len(sizes))
	release()
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if len(r.groups) != 2 || len(r.groups[1]) != 3 || w.Commits() != 2 {
		t.Fatalf("groups of %v (%d commits), want the first alone and the three waiting together", groupSizes(r.groups), w.Commits())
	}
	for i, n := range sizes {
		if len(got[i].New) != n {
			t.Errorf("caller %d got an answer for %d events, want %d", i, len(got[i].New), n)
		}
	}
}

// TestGroupStopsAtMaxRows: a group takes batches until MaxGroupRows events.
func TestGroupStopsAtMaxRows(t *testing.T) {
	r := newRecorder()
	release := r.holdNext()
	w := New(r.commit)
	defer w.Close()
	go func() { _, _ = w.Persist(t.Context(), batch(1)) }()
	<-r.entered
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { _, _ = w.Persist(t.Context(), batch(MaxGroupRows/2)) })
	}
	waitQueued(t, w, 3)
	release()
	wg.Wait()
	if got := groupSizes(r.groups); len(got) != 3 || got[1] != 2 || got[2] != 1 {
		t.Fatalf("groups of %v batches, want [1 2 1]", got)
	}
}

// TestFailedCommitFailsEveryCaller: a group fails as a whole.
func TestFailedCommitFailsEveryCaller(t *testing.T) {
	r := newRecorder()
	r.err = errors.New("disk full")
	release := r.holdNext()
	w := New(r.commit)
	defer w.Close()
	go func() { _, _ = w.Persist(t.Context(), batch(1)) }()
	<-r.entered
	errs := make(chan error, 2)
	for range 2 {
		go func() { _, err := w.Persist(t.Context(), batch(1)); errs <- err }()
	}
	waitQueued(t, w, 2)
	release()
	for range 2 {
		if err := <-errs; !errors.Is(err, r.err) {
			t.Fatalf("Persist: %v, want the commit's error", err)
		}
	}
	if w.Commits() != 0 {
		t.Fatalf("%d commits counted, want 0", w.Commits())
	}
}

// TestAbandonedBatchIsSkipped: a caller that gives up before the writer takes
// its batch hears so, and the batch never reaches a commit.
func TestAbandonedBatchIsSkipped(t *testing.T) {
	r := newRecorder()
	release := r.holdNext()
	w := New(r.commit)
	defer w.Close()
	go func() { _, _ = w.Persist(t.Context(), batch(1)) }()
	<-r.entered
	ctx, cancel := context.WithCancel(t.Context())
	abandoned := make(chan error, 1)
	go func() { _, err := w.Persist(ctx, batch(7)); abandoned <- err }()
	waitQueued(t, w, 1)
	cancel()
	if err := <-abandoned; !errors.Is(err, context.Canceled) {
		t.Fatalf("Persist: %v, want context.Canceled", err)
	}
	release()
	if _, err := w.Persist(t.Context(), batch(2)); err != nil {
		t.Fatal(err)
	}
	for _, g := range r.groups {
		for _, b := range g {
			if len(b.Events) == 7 {
				t.Fatal("the abandoned batch was committed")
			}
		}
	}
}

// TestCloseCommitsQueuedThenRefuses: Close commits what already waits, and
// every later Persist gets ErrClosed.
func TestCloseCommitsQueuedThenRefuses(t *testing.T) {
	r := newRecorder()
	release := r.holdNext()
	w := New(r.commit)
	go func() { _, _ = w.Persist(t.Context(), batch(1)) }()
	<-r.entered
	queued := make(chan error, 1)
	go func() { _, err := w.Persist(t.Context(), batch(5)); queued <- err }()
	waitQueued(t, w, 1)
	closed := make(chan struct{})
	go func() { w.Close(); close(closed) }()
	release()
	<-closed
	if err := <-queued; err != nil {
		t.Fatalf("a batch queued before Close: %v, want committed", err)
	}
	if _, err := w.Persist(t.Context(), batch(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Persist after Close: %v, want ErrClosed", err)
	}
	w.Close() // a second Close is harmless
}

func groupSizes(groups [][]*process.Batch) []int {
	out := make([]int, len(groups))
	for i, g := range groups {
		out[i] = len(g)
	}
	return out
}
