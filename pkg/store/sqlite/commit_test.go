package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func batchOf(topic string, n int, off *process.Offset) *process.Batch {
	b := &process.Batch{Offset: off}
	for i := range n {
		b.Events = append(b.Events, event.Event{Topic: topic, EventID: fmt.Sprint(i),
			Timestamp: time.Unix(0, 0).UTC(), Source: "s", Payload: []byte(`{}`)})
	}
	return b
}

// gate holds the writer before its next transaction until released.
func gate(s *Store) (entered <-chan struct{}, release func()) {
	in, out := make(chan struct{}, 100), make(chan struct{})
	var once sync.Once
	s.beforeCommit = func() {
		in <- struct{}{}
		<-out
	}
	return in, func() { once.Do(func() { close(out) }) }
}

func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.group.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d batches queued after 10 s, want %d", s.group.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGroupCommit: batches queued while a transaction runs share the next
// one, and each caller learns its own batch's outcome.
func TestGroupCommit(t *testing.T) {
	s := openTest(t)
	entered, release := gate(s)
	defer release()
	var wg sync.WaitGroup
	errs := make(chan error, 21)
	wg.Go(func() { _, err := s.Persist(context.Background(), batchOf("first", 1, nil)); errs <- err })
	<-entered
	news := make([][]bool, 20)
	for i := range 20 {
		wg.Go(func() {
			p, err := s.Persist(context.Background(), batchOf(fmt.Sprintf("t%d", i%2), 10, nil))
			news[i] = p.New
			errs <- err
		})
	}
	waitQueued(t, s, 20)
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.group.Commits(); n != 2 {
		t.Fatalf("%d transactions for 21 batches, want 2", n)
	}
	// Ten batches per topic with the same ten ids: one of them stored all.
	fresh := 0
	for _, isNew := range news {
		for _, n := range isNew {
			if n {
				fresh++
			}
		}
	}
	if fresh != 20 {
		t.Fatalf("%d events new across the group, want 20", fresh)
	}
	counts, _ := s.Counts(t.Context())
	for _, c := range counts {
		if c.Topic != "first" && (c.Received != 100 || c.Unique != 10 || c.Duplicates != 90) {
			t.Errorf("counts %+v, want 100/10/90", c)
		}
	}
}

// TestPersistRefusesOffset: a batch with a Kafka offset is a wiring mistake
// here; Persist refuses it before it is queued, even while the writer is
// busy, and stores nothing of it.
func TestPersistRefusesOffset(t *testing.T) {
	s := openTest(t)
	entered, release := gate(s)
	defer release()
	first := make(chan error, 1)
	go func() { _, err := s.Persist(context.Background(), batchOf("first", 1, nil)); first <- err }()
	<-entered
	for _, off := range []*process.Offset{
		{Topic: "events", Partition: 0, From: 0, Next: 5, First: true},
		{Topic: "events", Partition: 3, From: 5, Next: 9},
	} {
		// The writer is held: a queued batch would wait out the deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := s.Persist(ctx, batchOf("kafka", 3, off))
		cancel()
		if !errors.Is(err, ErrOffset) {
			t.Fatalf("Persist of a batch with offset %+v: %v, want ErrOffset", *off, err)
		}
		if errors.Is(err, process.ErrFenced) {
			t.Fatalf("a refused batch reads as fenced: %v", err)
		}
		if n := s.group.Queued(); n != 0 {
			t.Fatalf("%d batches queued after the refusal, want 0", n)
		}
	}
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if rows, _ := s.Rows(t.Context()); rows != 1 {
		t.Errorf("%d rows, want 1: nothing of a refused batch is stored", rows)
	}
	if n := s.group.Commits(); n != 1 {
		t.Errorf("%d transactions, want 1", n)
	}
}

// TestAbandonedBatchIsNotStored: a caller whose context ends before the
// writer takes its batch gets an error and nothing of it is stored.
func TestAbandonedBatchIsNotStored(t *testing.T) {
	s := openTest(t)
	entered, release := gate(s)
	defer release()
	go func() { _, _ = s.Persist(context.Background(), batchOf("first", 1, nil)) }()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Persist(ctx, batchOf("late", 5, nil)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Persist: %v, want the deadline", err)
	}
	release()
	if _, err := s.Persist(t.Context(), batchOf("after", 1, nil)); err != nil {
		t.Fatal(err)
	}
	if rows, _ := s.Rows(t.Context()); rows != 2 {
		t.Fatalf("%d rows, want 2: the abandoned batch must not be stored", rows)
	}
}

func TestCloseCommitsQueuedAndRefusesLater(t *testing.T) {
	s := openTest(t)
	if _, err := s.Persist(t.Context(), batchOf("a", 2, nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Persist(t.Context(), batchOf("b", 1, nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Persist after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestMultiRowInsertTellsNewFromOld: chunks where only some events are new
// (the rest stored before) report each event exactly, across topics.
func TestMultiRowInsertTellsNewFromOld(t *testing.T) {
	s := openTest(t)
	ev := func(i int) event.Event {
		return event.Event{Topic: fmt.Sprintf("t%d", i%3), EventID: fmt.Sprint(i),
			Timestamp: time.Unix(0, 0).UTC(), Source: "s", Payload: []byte(`{}`)}
	}
	var evens process.Batch
	for i := 0; i < 2*rowsPerInsert+6; i += 2 {
		evens.Events = append(evens.Events, ev(i))
	}
	if _, err := s.Persist(t.Context(), &evens); err != nil {
		t.Fatal(err)
	}
	var all process.Batch
	for i := range 2*rowsPerInsert + 7 {
		all.Events = append(all.Events, ev(i))
	}
	got, err := s.Persist(t.Context(), &all)
	if err != nil {
		t.Fatal(err)
	}
	for i, isNew := range got.New {
		if want := i%2 == 1 || i >= 2*rowsPerInsert+6; isNew != want {
			t.Fatalf("event %d: new=%v, want %v", i, isNew, want)
		}
	}
	// A chunk of only stored events, and one of only new ones.
	var again, fresh process.Batch
	for i := range rowsPerInsert {
		again.Events = append(again.Events, ev(i))
		fresh.Events = append(fresh.Events, ev(1000+i))
	}
	for _, c := range []struct {
		b    *process.Batch
		want bool
	}{{&again, false}, {&fresh, true}} {
		got, err := s.Persist(t.Context(), c.b)
		if err != nil {
			t.Fatal(err)
		}
		for i, isNew := range got.New {
			if isNew != c.want {
				t.Fatalf("event %d: new=%v, want %v", i, isNew, c.want)
			}
		}
	}
	if rows, _ := s.Rows(t.Context()); rows != int64(2*rowsPerInsert+7+rowsPerInsert) {
		t.Fatalf("%d rows", rows)
	}
}
