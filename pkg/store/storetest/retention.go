package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// far is a cutoff after every event of a test.
var far = time.Now().Add(24 * time.Hour)

// persistLater stores b once the clock is past every processing time the
// store holds, so its events are stored strictly later than those before.
func persistLater(t *testing.T, s Store, b *process.Batch) process.Persisted {
	t.Helper()
	var last time.Time
	for _, e := range readAll(t, s, "", 1000) {
		if e.ProcessedAt.After(last) {
			last = e.ProcessedAt
		}
	}
	for !time.Now().After(last.Add(time.Millisecond)) {
		time.Sleep(100 * time.Microsecond) // waiting for the clock itself
	}
	return persist(t, s, b)
}

func expire(t *testing.T, s Store, topic string, cutoff time.Time, keep bool, limit, want int) {
	t.Helper()
	n, err := s.Expire(context.Background(), topic, cutoff, keep, limit)
	if err != nil {
		t.Fatalf("Expire: %v", err)
	}
	if n != want {
		t.Fatalf("Expire(%q, limit %d) deleted %d, want %d", topic, limit, n, want)
	}
}

func wantAlive(t *testing.T, s Store, want ...string) {
	t.Helper()
	var got []string
	for _, e := range readAll(t, s, "", 2) {
		got = append(got, e.Topic+"/"+e.EventID)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("alive events %v, want %v", got, want)
	}
}

// testExpire: retention deletes the expired events of one topic only, at
// most limit per call, oldest first; counters do not change; a late copy of
// a deleted event is a duplicate while its key is kept, and once the key is
// forgotten it is stored again and counted as unique.
func testExpire(t *testing.T, s Subject) {
	persist(t, s.Store, &process.Batch{Events: []event.Event{
		ev("a", "1"), ev("a", "2"), ev("a", "3"), ev("a", "4"), ev("a", "5"), ev("b", "1")}})
	persistLater(t, s.Store, &process.Batch{Events: []event.Event{ev("a", "6"), ev("b", "2")}})
	all := readAll(t, s.Store, "", 100)
	cutoff := all[len(all)-1].ProcessedAt // of the second batch: not expired

	expire(t, s.Store, "a", cutoff, true, 2, 2)
	expire(t, s.Store, "a", cutoff, true, 2, 2)
	expire(t, s.Store, "a", cutoff, true, 2, 1)
	expire(t, s.Store, "a", cutoff, true, 2, 0)
	wantAlive(t, s.Store, "b/1", "a/6", "b/2")
	wantCounts(t, s.Store, map[string][3]int64{"a": {6, 6, 0}, "b": {2, 2, 0}})
	if n, err := s.Store.Deleted(context.Background()); err != nil || n != 5 {
		t.Errorf("Deleted = %d, %v; want 5", n, err)
	}

	p := persist(t, s.Store, &process.Batch{Events: []event.Event{ev("a", "1"), ev("a", "7")}})
	wantNew(t, p, false, true)
	wantCounts(t, s.Store, map[string][3]int64{"a": {8, 7, 1}, "b": {2, 2, 0}})
	wantAlive(t, s.Store, "b/1", "a/6", "b/2", "a/7")

	n, err := s.Store.Forget(context.Background(), far, 3)
	if err != nil || n != 3 {
		t.Fatalf("Forget = %d, %v; want 3 (the limit)", n, err)
	}
	if n, err = s.Store.Forget(context.Background(), far, 3); err != nil || n != 2 {
		t.Fatalf("Forget = %d, %v; want the 2 left", n, err)
	}
	p = persist(t, s.Store, &process.Batch{Events: []event.Event{ev("a", "1")}})
	wantNew(t, p, true)
	wantCounts(t, s.Store, map[string][3]int64{"a": {9, 8, 1}, "b": {2, 2, 0}})
	wantAlive(t, s.Store, "b/1", "a/6", "b/2", "a/7", "a/1")
}

// testExpireWithoutKeys: when the dedup window is no longer than the
// retention, no key is kept and a re-sent event is stored again at once.
func testExpireWithoutKeys(t *testing.T, s Subject) {
	persist(t, s.Store, &process.Batch{Events: []event.Event{ev("a", "1"), ev("a", "2")}})
	persistLater(t, s.Store, &process.Batch{Events: []event.Event{ev("b", "1")}})
	all := readAll(t, s.Store, "", 100)
	expire(t, s.Store, "a", all[len(all)-1].ProcessedAt, false, 10, 2)
	if n, err := s.Store.Forget(context.Background(), far, 10); err != nil || n != 0 {
		t.Errorf("Forget = %d, %v; want no key kept", n, err)
	}
	p := persist(t, s.Store, &process.Batch{Events: []event.Event{ev("a", "1"), ev("a", "2")}})
	wantNew(t, p, true, true)
	wantCounts(t, s.Store, map[string][3]int64{"a": {4, 4, 0}, "b": {1, 1, 0}})
	wantAlive(t, s.Store, "b/1", "a/1", "a/2")
}

// testExpireCursor: a cursor that points at a deleted event goes on with the
// next live one; paging skips and repeats nothing alive.
func testExpireCursor(t *testing.T, s Subject) {
	for i := range 10 {
		persistLater(t, s.Store, &process.Batch{Events: []event.Event{ev("c", fmt.Sprint(i))}})
	}
	settle(t, s.Store)
	page, err := s.Store.Events(context.Background(), "", event.Position{}, 3)
	if err != nil || len(page) != 3 {
		t.Fatalf("first page: %d events, %v", len(page), err)
	}
	cursor := page[2].Pos
	all := readAll(t, s.Store, "", 100)
	// Deletes 0-5: the cursor's event (2) and those after it up to 5.
	expire(t, s.Store, "c", all[6].ProcessedAt, true, 100, 6)
	for _, topic := range []string{"", "c"} {
		for _, limit := range []int{1, 2, 100} {
			rest, _ := pageFrom(t, s.Store, topic, cursor, limit)
			var got []string
			for _, e := range rest {
				got = append(got, e.EventID)
			}
			if fmt.Sprint(got) != "[6 7 8 9]" {
				t.Errorf("topic %q limit %d: paging on from a deleted position read %v, want [6 7 8 9]", topic, limit, got)
			}
		}
	}
	persist(t, s.Store, &process.Batch{Events: []event.Event{ev("c", "10")}})
	if rest, _ := pageFrom(t, s.Store, "", cursor, 100); len(rest) != 5 || rest[4].EventID != "10" {
		t.Errorf("after a new event the old cursor reads %d events", len(rest))
	}
}

// testExpireWhilePersisting: late copies of the events being deleted arrive
// while retention deletes them, batch after batch. Every key is counted
// unique exactly once (its key is kept), and counters stay exact.
func testExpireWhilePersisting(t *testing.T, s Subject) {
	const initial, rounds, copies, fresh = 300, 30, 20, 5
	var first process.Batch
	for i := range initial {
		first.Events = append(first.Events, ev("r", fmt.Sprint(i)))
	}
	persist(t, s.Store, &first)
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var expireErr error
	wg.Go(func() {
		for {
			if _, err := s.Store.Expire(ctx, "r", far, true, 7); err != nil {
				expireErr = err
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	})
	rng := rand.New(rand.NewPCG(3, 4))
	received := int64(initial)
	next := initial
	for range rounds {
		var b process.Batch
		seen := map[int]bool{}
		for range copies {
			i := rng.IntN(next)
			if !seen[i] {
				seen[i] = true
				b.Events = append(b.Events, ev("r", fmt.Sprint(i)))
			}
		}
		for range fresh {
			b.Events = append(b.Events, ev("r", fmt.Sprint(next)))
			next++
		}
		received += int64(len(b.Events))
		p := persist(t, s.Store, &b)
		for i, isNew := range p.New {
			if isNew != (i >= len(b.Events)-fresh) {
				t.Fatalf("event %s: new=%v", b.Events[i].EventID, isNew)
			}
		}
	}
	close(stop)
	wg.Wait()
	if expireErr != nil {
		t.Fatalf("Expire: %v", expireErr)
	}
	for {
		n, err := s.Store.Expire(ctx, "r", far, true, 50)
		if err != nil {
			t.Fatalf("Expire: %v", err)
		}
		if n == 0 {
			break
		}
	}
	wantCounts(t, s.Store, map[string][3]int64{"r": {received, int64(next), received - int64(next)}})
}
