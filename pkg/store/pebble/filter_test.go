package pebble_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/store/pebble"
	"github.com/event-aggregator/event-aggregator/pkg/store/storetest"
)

func uuidEvents(rng *rand.Rand, n int) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		evs[i] = event.Event{Topic: []string{"orders", "users"}[i%2], EventID: storetest.RandomUUID(rng),
			Source: "test", Timestamp: time.Unix(1_700_000_000, 0), Payload: []byte(`{}`)}
	}
	return evs
}

// persistAll sends evs in batches of 100 from four goroutines and returns
// how many the store took as new.
func persistAll(t *testing.T, s *pebble.Store, evs []event.Event) int {
	t.Helper()
	var (
		mu    sync.Mutex
		fresh int
		wg    sync.WaitGroup
	)
	work := make(chan []event.Event)
	for range 4 {
		wg.Go(func() {
			for b := range work {
				p, err := s.Persist(context.Background(), &process.Batch{Events: b})
				if err != nil {
					t.Errorf("persist: %v", err)
					continue
				}
				mu.Lock()
				for _, n := range p.New {
					if n {
						fresh++
					}
				}
				mu.Unlock()
			}
		})
	}
	for i := 0; i < len(evs); i += 100 {
		work <- evs[i:min(i+100, len(evs))]
	}
	close(work)
	wg.Wait()
	return fresh
}

func waitFilter(t *testing.T, s *pebble.Store) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !s.FilterReady(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the dedup filter was not built in 10 s")
		}
	}
}

// The filter never rules out a stored key: not while it is rebuilt under
// concurrent writes (sized for 64 keys, it is outgrown and rebuilt over and
// over), not while it is built after a restart, not once it is built, and
// not when it is full at its memory bound.
func TestFilterKeepsEveryStoredKey(t *testing.T) {
	t.Run("growing", func(t *testing.T) { testFilterKeepsEveryStoredKey(t, pebble.WithFilterKeys(64)) })
	t.Run("full", func(t *testing.T) {
		testFilterKeepsEveryStoredKey(t, pebble.WithFilterKeys(64), pebble.WithFilter(2<<10))
	})
}

func testFilterKeepsEveryStoredKey(t *testing.T, opts ...pebble.Option) {
	ctx := context.Background()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	stored := uuidEvents(rng, 20_000)
	s, err := pebble.Open(ctx, dir, opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if n := persistAll(t, s, stored); n != len(stored) {
		t.Fatalf("%d of %d new events stored as new", n, len(stored))
	}
	if n := persistAll(t, s, stored); n != 0 {
		t.Fatalf("%d duplicates stored as new while the filter was rebuilt", n)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s, err = pebble.Open(ctx, dir, opts...)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if n := persistAll(t, s, stored); n != 0 { // while the filter is built
		t.Fatalf("%d duplicates stored as new after a restart", n)
	}
	waitFilter(t, s)
	if n := persistAll(t, s, stored); n != 0 {
		t.Fatalf("%d duplicates stored as new once the filter was built", n)
	}
	more := uuidEvents(rng, 1_000)
	if n := persistAll(t, s, more); n != len(more) {
		t.Fatalf("%d of %d new events stored as new", n, len(more))
	}
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatalf("counts: %v", err)
	}
	var unique, dups int64
	for _, c := range counts {
		unique += c.Unique
		dups += c.Duplicates
	}
	if unique != int64(len(stored)+len(more)) || dups != int64(3*len(stored)) {
		t.Fatalf("unique %d, duplicates %d; want %d, %d", unique, dups, len(stored)+len(more), 3*len(stored))
	}
}

// Once built, the filter answers for new keys, so the LSM checks no table
// filter for them; duplicates still go to the LSM.
func TestFilterSparesTheLSM(t *testing.T) {
	s := open(t)
	rng := rand.New(rand.NewPCG(3, 4))
	old := uuidEvents(rng, 1_000)
	persistAll(t, s, old)
	if _, err := s.TableBounds(); err != nil { // a flush: lookups now check a table's filter
		t.Fatalf("flush: %v", err)
	}
	waitFilter(t, s)

	before := s.FilterChecks()
	if n := persistAll(t, s, uuidEvents(rng, 1_000)); n != 1_000 {
		t.Fatalf("%d of 1000 new events stored as new", n)
	}
	if checks := s.FilterChecks() - before; checks > 50 {
		t.Errorf("1000 new keys made the LSM check %d table filters, want about 1%%", checks)
	}
	before = s.FilterChecks()
	if n := persistAll(t, s, old); n != 0 {
		t.Fatalf("%d duplicates stored as new", n)
	}
	if checks := s.FilterChecks() - before; checks < 1_000 {
		t.Errorf("1000 duplicates made the LSM check %d table filters, want one each at least", checks)
	}
}

// While a full filter's successor is built, the full one still answers: new
// keys keep away from the LSM, and keys committed meanwhile are in it, so
// their duplicates are found. A filter at its memory bound, rebuilt once
// retention has deleted half its keys, is freed instead (the two would take
// twice the bound), and the LSM answers until the build ends.
func TestFilterAnswersWhileItsSuccessorIsBuilt(t *testing.T) {
	t.Run("growing", func(t *testing.T) { testFilterWhileRebuilt(t, false) })
	t.Run("at the bound", func(t *testing.T) { testFilterWhileRebuilt(t, true) })
}

func testFilterWhileRebuilt(t *testing.T, atBound bool) {
	ctx := context.Background()
	gate := make(chan struct{}, 1)
	gate <- struct{}{} // the build at Open
	opts := []pebble.Option{pebble.WithFilterKeys(1_000), pebble.WithFilterGate(gate)}
	if atBound {
		opts = append(opts, pebble.WithFilter(2<<10)) // about 1,700 keys: the first filter is sized for all
	}
	s, err := pebble.Open(ctx, t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	rng := rand.New(rand.NewPCG(5, 6))
	first := uuidEvents(rng, 900)
	if atBound {
		first = uuidEvents(rng, 1_800)
	}
	persistAll(t, s, first)
	waitFilter(t, s)
	if atBound {
		for _, topic := range []string{"orders", "users"} {
			if _, err := s.Expire(ctx, topic, time.Now().Add(time.Hour), false, 10_000); err != nil {
				t.Fatalf("expire: %v", err)
			}
		}
		first = nil // new again: their keys are deleted
	}
	// Past the keys it was sized for (or, at the bound, with all of them
	// deleted): a build starts, and waits.
	outgrow := uuidEvents(rng, 200)
	persistAll(t, s, outgrow)
	if s.FilterReady() {
		t.Fatal("the filter was not outgrown")
	}
	if _, err := s.TableBounds(); err != nil { // a flush: lookups now check a table's filter
		t.Fatalf("flush: %v", err)
	}

	during := uuidEvents(rng, 1_000)
	before := s.FilterChecks()
	if n := persistAll(t, s, during); n != len(during) {
		t.Fatalf("%d of %d new events stored as new", n, len(during))
	}
	switch checks := s.FilterChecks() - before; {
	case !atBound && checks > 100:
		t.Errorf("during the build, 1000 new keys made the LSM check %d table filters, want a few percent", checks)
	case atBound && checks < 900: // a key outside the table's bounds skips its filter
		t.Errorf("during the build, 1000 new keys made the LSM check %d table filters, want about one each", checks)
	}
	for _, evs := range [][]event.Event{first, outgrow, during} {
		if n := persistAll(t, s, evs); n != 0 {
			t.Fatalf("during the build, %d of %d duplicates stored as new", n, len(evs))
		}
	}
	if s.FilterReady() {
		t.Fatal("the build did not wait")
	}

	gate <- struct{}{}
	waitFilter(t, s)
	for _, evs := range [][]event.Event{first, outgrow, during} {
		if n := persistAll(t, s, evs); n != 0 {
			t.Fatalf("after the build, %d of %d duplicates stored as new", n, len(evs))
		}
	}
}
