package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

func testNewThenDuplicate(t *testing.T, s Subject) {
	p := persist(t, s.Store, &process.Batch{Events: []event.Event{ev("t", "a"), ev("t", "b"), ev("u", "c")}})
	wantNew(t, p, true, true, true)
	// The same event_id under another topic is another event.
	p = persist(t, s.Store, &process.Batch{Events: []event.Event{ev("t", "b"), ev("u", "c"), ev("t", "d"), ev("u", "a")}})
	wantNew(t, p, false, false, true, true)
	p = persist(t, s.Store, &process.Batch{Events: []event.Event{ev("u", "a")}, Shard: 5})
	wantNew(t, p, false)
	wantCounts(t, s.Store, map[string][3]int64{"t": {4, 3, 1}, "u": {4, 2, 2}})
	wantRows(t, s.Store, 5)
}

func testFirstCopyWins(t *testing.T, s Subject) {
	first := ev("t", "k")
	first.Source = "first"
	first.Payload = []byte(`{"v":1,"n":{"deep":[1,2]}}`)
	first.Timestamp = baseTime.Add(-time.Hour)
	second := first
	second.Source = "second"
	second.Payload = []byte(`{"v":2}`)
	second.Timestamp = baseTime

	wantNew(t, persist(t, s.Store, &process.Batch{Events: []event.Event{first}}), true)
	wantNew(t, persist(t, s.Store, &process.Batch{Events: []event.Event{second, ev("t", "other")}}), false, true)
	wantNew(t, persist(t, s.Store, &process.Batch{Events: []event.Event{second}, Shard: 9}), false)

	got := byKey(t, readAll(t, s.Store, "t", 10))
	sameEvent(t, got[first.Key()], first, s.TimeResolution)
	wantCounts(t, s.Store, map[string][3]int64{"t": {4, 2, 2}})
}

func testDropped(t *testing.T, s Subject) {
	persist(t, s.Store, &process.Batch{
		Events:  []event.Event{ev("a", "1"), ev("a", "2")},
		Dropped: map[string]int{"a": 3, "b": 2},
	})
	wantCounts(t, s.Store, map[string][3]int64{"a": {5, 2, 3}, "b": {2, 0, 2}})
	// Only drops, on another shard: still counted.
	persist(t, s.Store, &process.Batch{Dropped: map[string]int{"b": 1, "a": 1}, Shard: 4})
	wantCounts(t, s.Store, map[string][3]int64{"a": {6, 2, 4}, "b": {3, 0, 3}})
	wantRows(t, s.Store, 2)
}

// testConcurrentOverlapping has many writers send the same events in
// different orders, on several shards (some shared), with drops: every key
// must be new exactly once and the counters must add up exactly.
func testConcurrentOverlapping(t *testing.T, s Subject) {
	const (
		writers  = 50
		keys     = 240
		perBatch = 60
	)
	topics := []string{"alpha", "beta", "gamma"}
	pool := make([]event.Event, keys)
	for i := range pool {
		pool[i] = ev(topics[i%len(topics)], fmt.Sprintf("k%04d", i))
	}
	var newCount [keys]atomic.Int32
	var dropped [3]atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			perm := rng.Perm(keys)
			for start := 0; start < keys; start += perBatch {
				idx := perm[start : start+perBatch]
				b := &process.Batch{Shard: w % 7, Dropped: map[string]int{}}
				for _, i := range idx {
					b.Events = append(b.Events, pool[i])
				}
				ti := rng.IntN(len(topics))
				n := rng.IntN(3)
				b.Dropped[topics[ti]] += n
				p, err := s.Store.Persist(context.Background(), b)
				if err != nil {
					t.Errorf("writer %d: Persist: %v", w, err)
					return
				}
				dropped[ti].Add(int64(n))
				for j, isNew := range p.New {
					if isNew {
						newCount[idx[j]].Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := range newCount {
		if n := newCount[i].Load(); n != 1 {
			t.Errorf("key %v reported new %d times, want once", pool[i].Key(), n)
		}
	}
	want := map[string][3]int64{}
	for ti, topic := range topics {
		perTopic := int64(keys / len(topics))
		received := perTopic*writers + dropped[ti].Load()
		want[topic] = [3]int64{received, perTopic, received - perTopic}
	}
	wantCounts(t, s.Store, want)
	wantRows(t, s.Store, keys)
}

// testBytewiseKeys: keys equal to a human (case, Unicode normalization,
// spaces, look-alikes) are different keys to the store.
func testBytewiseKeys(t *testing.T, s Subject) {
	ids := []string{
		"abc", "ABC", "Abc",
		"\u00e9", "e\u0301", // é as NFC and as NFD
		"x", "x ", " x", "x\u00a0", "x\u200b", // spaces, no-break space, zero-width space
		"ss", "ß", "ff", "\ufb00", // German sharp s, ff ligature
		"A", "\uff21", // fullwidth A
		"i\u0307", "\u0130", // dotted i
	}
	topics := []string{"orders", "Orders", "orders ", "\u00e9", "e\u0301"}
	var b process.Batch
	for _, id := range ids {
		b.Events = append(b.Events, ev("t", id))
	}
	for _, topic := range topics {
		b.Events = append(b.Events, ev(topic, "1"))
	}
	p := persist(t, s.Store, &b)
	for i, isNew := range p.New {
		if !isNew {
			t.Errorf("%q taken for a duplicate", b.Events[i].Key())
		}
	}
	p = persist(t, s.Store, &b)
	for i, isNew := range p.New {
		if isNew {
			t.Errorf("%q stored twice", b.Events[i].Key())
		}
	}
	got := byKey(t, readAll(t, s.Store, "", 7))
	if len(got) != len(b.Events) {
		t.Errorf("%d events stored, want %d", len(got), len(b.Events))
	}
	for _, e := range b.Events {
		sameEvent(t, got[e.Key()], e, s.TimeResolution)
	}
	for _, topic := range topics {
		if n := len(readAll(t, s.Store, topic, 10)); n != 1 {
			t.Errorf("Events(topic %q) returned %d events, want 1", topic, n)
		}
	}
	if c := counts(t, s.Store); len(c) != len(topics)+1 {
		t.Errorf("Counts has %d topics, want %d: %v", len(c), len(topics)+1, c)
	}
}

// testHostileStrings stores names and payloads that break naive SQL, JSON or
// encoding handling, and expects every byte back.
func testHostileStrings(t *testing.T, s Subject) {
	names := []string{
		`'); DROP TABLE events;--`,
		`" OR 1=1 --`,
		`\'; SELECT pg_sleep(10); --`,
		`Robert'); DELETE FROM counters; --`,
		`$1 %s %v ? :name @p1 %%`,
		`C:\path\to\`,
		`a/b:c`, `1:a/b`,
		"null", "{}", "[]", "NaN",
		"🦆🔥👩‍👩‍👧‍👦",
		"مرحبا", "事件", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇",
		"\ufffe\uffff\U0010ffff",
		strings.Repeat("a", event.MaxNameBytes),
		strings.Repeat("é", 127) + "x",
		strings.Repeat("🦆", 63) + "abc",
	}
	payloads := []string{
		`{"nested":{"a":[1,{"b":{"c":[null,true,false,-0.0,1e400,12345678901234567890]}}]},"s":"\u0000\u001f\n\t\"\\\/","emoji":"\ud83e\udd86","raw":"🦆"}`,
		"{ \"a\" :\t1 ,\n \"a\" : 2 }", // whitespace and a repeated key: kept as sent
		`{"z":1,"a":2}`,                // key order kept
		`{"sql":"'); DROP TABLE events;--","u":"\u2028\u2029"}`,
		`{}`,
		`{"big":"` + strings.Repeat("x", 200<<10) + `"}`,
	}
	var b process.Batch
	for i, n := range names {
		if len(n) > event.MaxNameBytes {
			t.Fatalf("test name %q is %d bytes", n, len(n))
		}
		e := ev(n, n)
		e.Source = n
		e.Payload = []byte(payloads[i%len(payloads)])
		b.Events = append(b.Events, e)
	}
	for i, p := range payloads {
		e := ev("payloads", fmt.Sprint(i))
		e.Payload = []byte(p)
		b.Events = append(b.Events, e)
	}
	p := persist(t, s.Store, &b)
	for i, isNew := range p.New {
		if !isNew {
			t.Errorf("%q not new", b.Events[i].Key())
		}
	}
	got := byKey(t, readAll(t, s.Store, "", 5))
	for _, e := range b.Events {
		sameEvent(t, got[e.Key()], e, s.TimeResolution)
	}
	for _, n := range names {
		if page := readAll(t, s.Store, n, 3); len(page) != 1 {
			t.Errorf("Events(topic %q) returned %d events, want 1", n, len(page))
		}
	}
	wantRows(t, s.Store, int64(len(b.Events)))
}

// testTimestamps: times come back in UTC, truncated to the store's
// resolution; processed_at is one instant per batch, in UTC, now.
func testTimestamps(t *testing.T, s Subject) {
	times := []time.Time{
		time.Date(2026, 11, 25, 10, 0, 0, 123_456_789, time.FixedZone("IST", 5*3600+1800)),
		time.Date(1969, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2200, 6, 15, 12, 0, 0, 999, time.FixedZone("", -7*3600)),
		time.Date(2026, 3, 29, 1, 59, 59, 999_999_500, time.FixedZone("", 13*3600+45*60)),
		// The whole range RFC 3339 can write, beyond Unix nanoseconds.
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1677, 9, 21, 0, 12, 43, 145_224_191, time.UTC),
		time.Date(2262, 4, 11, 23, 47, 16, 854_775_808, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
	}
	var b process.Batch
	for i, ts := range times {
		e := ev("t", fmt.Sprint(i))
		e.Timestamp = ts
		b.Events = append(b.Events, e)
	}
	before := time.Now()
	persist(t, s.Store, &b)
	persist(t, s.Store, &process.Batch{Events: []event.Event{ev("t", "later")}})
	after := time.Now()

	all := readAll(t, s.Store, "t", 100)
	got := byKey(t, all)
	for _, e := range b.Events {
		sameEvent(t, got[e.Key()], e, s.TimeResolution)
	}
	// Same machine: the store's clock is ours, give or take a little.
	first := got[b.Events[0].Key()].ProcessedAt
	if first.Before(before.Add(-2*time.Second)) || first.After(after.Add(2*time.Second)) {
		t.Errorf("processed_at %v is not between %v and %v", first, before, after)
	}
	for _, e := range b.Events {
		if at := got[e.Key()].ProcessedAt; !at.Equal(first) {
			t.Errorf("processed_at differs within one batch: %v and %v", first, at)
		}
	}
	if later := got[event.Key{Topic: "t", EventID: "later"}].ProcessedAt; later.Before(first) {
		t.Errorf("later batch processed_at %v before the first's %v", later, first)
	}
}

// testPagination: paging through Events, with and without a topic and with
// any page size, yields every stored event exactly once, batch after batch.
func testPagination(t *testing.T, s Subject) {
	topics := []string{"a", "b", "c"}
	batchOf := map[event.Key]int{}
	stored := map[event.Key]event.Event{}
	rng := rand.New(rand.NewPCG(1, 2))
	var keys []event.Key
	for bi := range 6 {
		var b process.Batch
		b.Shard = bi % 2
		inBatch := map[event.Key]bool{}
		for i := range 50 {
			e := ev(topics[rng.IntN(len(topics))], fmt.Sprintf("b%d-%d", bi, i))
			if len(keys) > 0 && i%5 == 0 {
				// A copy of an earlier event, with another payload.
				k := keys[rng.IntN(len(keys))]
				e = ev(k.Topic, k.EventID)
				e.Payload = []byte(`{"copy":true}`)
			}
			if inBatch[e.Key()] {
				continue
			}
			inBatch[e.Key()] = true
			b.Events = append(b.Events, e)
		}
		p := persist(t, s.Store, &b)
		for i, isNew := range p.New {
			k := b.Events[i].Key()
			_, before := stored[k]
			if isNew == before {
				t.Fatalf("batch %d: %q new=%v, stored before=%v", bi, k, isNew, before)
			}
			if isNew {
				stored[k] = b.Events[i]
				batchOf[k] = bi
				keys = append(keys, k)
			}
		}
	}
	for _, topic := range append([]string{""}, topics...) {
		for _, limit := range []int{1, 7, 1000} {
			all := readAll(t, s.Store, topic, limit)
			got := byKey(t, all)
			want := 0
			for k, e := range stored {
				if topic != "" && k.Topic != topic {
					continue
				}
				want++
				g, ok := got[k]
				if !ok {
					t.Errorf("topic %q limit %d: %q missing", topic, limit, k)
					continue
				}
				sameEvent(t, g, e, s.TimeResolution)
			}
			if len(all) != want {
				t.Errorf("topic %q limit %d: %d events, want %d", topic, limit, len(all), want)
			}
			for i := 1; i < len(all); i++ {
				if batchOf[all[i-1].Key()] > batchOf[all[i].Key()] {
					t.Errorf("topic %q: an event of batch %d comes after one of batch %d",
						topic, batchOf[all[i-1].Key()], batchOf[all[i].Key()])
					break
				}
			}
			if len(all) > 0 {
				last := all[len(all)-1].Pos
				if rest, err := s.Store.Events(context.Background(), topic, last, 10); err != nil || len(rest) != 0 {
					t.Errorf("Events after the last position: %d events, err %v", len(rest), err)
				}
			}
		}
	}
	if rest := readAll(t, s.Store, "no-such-topic", 10); len(rest) != 0 {
		t.Errorf("unknown topic returned %d events", len(rest))
	}
	wantRows(t, s.Store, int64(len(stored)))
}

// testCommitOrder: a batch inserted first but committed last, after a later
// batch a client has already paged past, still reaches that client when it
// pages on from its cursor. Every event is read exactly once.
func testCommitOrder(t *testing.T, s Subject) {
	batch := func(topic string, shard int) *process.Batch {
		b := &process.Batch{Shard: shard}
		for i := range 5 {
			b.Events = append(b.Events, ev(topic, fmt.Sprint(i)))
		}
		return b
	}
	early, slow, fast := batch("early", 0), batch("slow", 1), batch("fast", 2)
	persist(t, s.Store, early)

	var first []event.Stored
	var cursor event.Position
	if s.Stall == nil {
		persist(t, s.Store, slow)
		persist(t, s.Store, fast)
		first, cursor = pageFrom(t, s.Store, "", cursor, 2)
	} else {
		stalled, release := s.Stall(t, "slow", slow.Shard)
		done := make(chan error, 1)
		go func() {
			_, err := s.Store.Persist(context.Background(), slow)
			done <- err
		}()
		for deadline := time.Now().Add(10 * time.Second); !stalled(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				release()
				t.Fatalf("the slow Persist did not stall within 10s")
			}
		}
		// The slow batch holds its rows, uncommitted; a later batch commits
		// and a client pages to the end.
		persist(t, s.Store, fast)
		first, cursor = pageFrom(t, s.Store, "", cursor, 2)
		release()
		if err := <-done; err != nil {
			t.Fatalf("slow Persist: %v", err)
		}
	}

	// The client polls on from its cursor until it has seen as many events
	// as are stored, or gives up.
	const want = 15
	seen := first
	for deadline := time.Now().Add(10 * time.Second); len(seen) < want && time.Now().Before(deadline); {
		var page []event.Stored
		page, cursor = pageFrom(t, s.Store, "", cursor, 2)
		seen = append(seen, page...)
		if len(page) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	got := byKey(t, seen)
	for _, b := range []*process.Batch{early, slow, fast} {
		for _, e := range b.Events {
			if _, ok := got[e.Key()]; !ok {
				t.Errorf("%q never served to a client paging from its cursor", e.Key())
			}
		}
	}
	if len(seen) != want {
		t.Errorf("paging served %d events, want %d", len(seen), want)
	}
	wantRows(t, s.Store, want)
}

func testLargeBatch(t *testing.T, s Subject) {
	const n = 5000
	var b process.Batch
	for i := range n {
		b.Events = append(b.Events, ev(fmt.Sprintf("t%d", i%4), fmt.Sprint(i)))
	}
	p := persist(t, s.Store, &b)
	for i, isNew := range p.New {
		if !isNew {
			t.Fatalf("event %d not new", i)
		}
	}
	// Half again, interleaved with as many new ones.
	var again process.Batch
	for i := range n / 2 {
		again.Events = append(again.Events, b.Events[2*i], ev("t-new", fmt.Sprint(i)))
	}
	p = persist(t, s.Store, &again)
	for i, isNew := range p.New {
		if isNew != (i%2 == 1) {
			t.Fatalf("second batch event %d (%q): new=%v", i, again.Events[i].Key(), isNew)
		}
	}
	wantRows(t, s.Store, n+n/2)
}

func offset(topic string, partition int, from, next int64) *process.Offset {
	return &process.Offset{Topic: topic, Partition: partition, From: from, Next: next}
}

// first is the range of the first batch of a partition the store has no
// offset for.
func first(topic string, partition int, from, next int64) *process.Offset {
	o := offset(topic, partition, from, next)
	o.First = true
	return o
}

// testOffsets: the first batch of a partition records its offset, the next
// one must start where the last ended, and a zombie (stale From) fails with
// ErrFenced and changes nothing at all. So does a batch that is not a
// partition's first when the store has no offset for it (a store reset under
// a running consumer).
func testOffsets(t *testing.T, s Subject) {
	const topic = "events"
	o := s.Store.(OffsetStore)
	wantOffsets(t, o, topic, map[int]int64{})
	for _, from := range []int64{0, 100} {
		_, err := s.Store.Persist(context.Background(), &process.Batch{Events: []event.Event{ev("t", "reset")},
			Shard: 3, Offset: offset(topic, 3, from, from+10)})
		if !errors.Is(err, process.ErrFenced) {
			t.Fatalf("a batch from %d that is not the first, on a store with no offset: err %v, want ErrFenced", from, err)
		}
	}
	wantRows(t, s.Store, 0)
	persist(t, s.Store, &process.Batch{Events: []event.Event{ev("t", "1"), ev("t", "2")}, Shard: 3, Offset: first(topic, 3, 0, 100)})
	wantOffsets(t, o, topic, map[int]int64{3: 100})
	persist(t, s.Store, &process.Batch{Events: []event.Event{ev("t", "3")}, Shard: 3, Offset: offset(topic, 3, 100, 250)})
	wantOffsets(t, o, topic, map[int]int64{3: 250})

	before := offsetSnapshot(t, o, topic)
	for _, off := range []*process.Offset{offset(topic, 3, 100, 180), offset(topic, 3, 0, 80), offset(topic, 3, 300, 380),
		first(topic, 3, 0, 80)} { // behind, far behind, ahead, a late first batch
		from := off.From
		_, err := s.Store.Persist(context.Background(), &process.Batch{
			Events:  []event.Event{ev("t", "zombie"), ev("t", "1"), ev("z", "zombie")},
			Dropped: map[string]int{"t": 2, "y": 1},
			Shard:   3,
			Offset:  off,
		})
		if !errors.Is(err, process.ErrFenced) {
			t.Fatalf("batch from %d with the partition at 250: err %v, want ErrFenced", from, err)
		}
		if after := offsetSnapshot(t, o, topic); after != before {
			t.Fatalf("a fenced batch changed the store:\nbefore %+v\n after %+v", before, after)
		}
	}

	// The owner goes on; other partitions and topics are independent, and a
	// partition's first batch may start anywhere (Kafka's committed offset).
	persist(t, s.Store, &process.Batch{Events: []event.Event{ev("t", "4")}, Shard: 3, Offset: offset(topic, 3, 250, 300)})
	persist(t, s.Store, &process.Batch{Events: []event.Event{ev("t", "5")}, Shard: 4, Offset: first(topic, 4, 0, 10)})
	persist(t, s.Store, &process.Batch{Events: []event.Event{ev("t", "6")}, Shard: 3, Offset: first("events.other", 3, 500, 510)})
	wantOffsets(t, o, topic, map[int]int64{3: 300, 4: 10})
	wantOffsets(t, o, "events.other", map[int]int64{3: 510})
	wantCounts(t, s.Store, map[string][3]int64{"t": {6, 6, 0}})
	wantRows(t, s.Store, 6)
}

// testOffsetRace: consumers racing on one partition from the same offset
// (a rebalance with a zombie): exactly one wins each round, and only the
// winner's events and counts are stored.
func testOffsetRace(t *testing.T, s Subject) {
	const racers = 8
	offs := s.Store.(OffsetStore)
	var stored int64
	for round := range 3 {
		from := int64(round * 10)
		var wins, fenced atomic.Int32
		var wg sync.WaitGroup
		for r := range racers {
			wg.Go(func() {
				o := offset("events", 0, from, from+10)
				o.First = round == 0
				b := &process.Batch{Shard: r, Dropped: map[string]int{"t": 1}, Offset: o}
				for i := range 3 {
					b.Events = append(b.Events, ev("t", fmt.Sprintf("r%d-%d-%d", round, r, i)))
				}
				_, err := s.Store.Persist(context.Background(), b)
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, process.ErrFenced):
					fenced.Add(1)
				default:
					t.Errorf("round %d racer %d: %v", round, r, err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || fenced.Load() != racers-1 {
			t.Fatalf("round %d: %d won and %d were fenced, want 1 and %d", round, wins.Load(), fenced.Load(), racers-1)
		}
		stored += 3
		wantOffsets(t, offs, "events", map[int]int64{0: from + 10})
	}
	wantRows(t, s.Store, stored)
	wantCounts(t, s.Store, map[string][3]int64{"t": {stored + 3, stored, 3}})
}

// testEmptyBatches: a batch with no events still counts its drops (a poll of
// only known duplicates); one with nothing at all changes nothing.
func testEmptyBatches(t *testing.T, s Subject) {
	p := persist(t, s.Store, &process.Batch{Dropped: map[string]int{"t": 5}, Shard: 2})
	wantNew(t, p)
	wantCounts(t, s.Store, map[string][3]int64{"t": {5, 0, 5}})
	persist(t, s.Store, &process.Batch{})
	persist(t, s.Store, &process.Batch{Events: []event.Event{}, Dropped: map[string]int{}})
	wantCounts(t, s.Store, map[string][3]int64{"t": {5, 0, 5}})
	wantRows(t, s.Store, 0)
}

// testEmptyBatchOffsets: a batch with no events still moves its offset, and
// is fenced like any other.
func testEmptyBatchOffsets(t *testing.T, s Subject) {
	offs := s.Store.(OffsetStore)
	p := persist(t, s.Store, &process.Batch{Dropped: map[string]int{"t": 5}, Shard: 2, Offset: first("events", 2, 0, 5)})
	wantNew(t, p)
	wantCounts(t, s.Store, map[string][3]int64{"t": {5, 0, 5}})
	wantOffsets(t, offs, "events", map[int]int64{2: 5})

	_, err := s.Store.Persist(context.Background(), &process.Batch{Dropped: map[string]int{"t": 7}, Shard: 2, Offset: offset("events", 2, 0, 7)})
	if !errors.Is(err, process.ErrFenced) {
		t.Fatalf("stale empty batch: err %v, want ErrFenced", err)
	}
	// Only an offset: every record of the poll went elsewhere (dead letters).
	persist(t, s.Store, &process.Batch{Shard: 2, Offset: offset("events", 2, 5, 9)})
	wantCounts(t, s.Store, map[string][3]int64{"t": {5, 0, 5}})
	wantOffsets(t, offs, "events", map[int]int64{2: 9})
	wantRows(t, s.Store, 0)
}

// testRefusesOffsets: a store without offsets refuses a batch that carries
// one (first of its partition or not, with events, drops or neither) with an
// error that is not ErrFenced, changes nothing, and goes on storing batches
// without one.
func testRefusesOffsets(t *testing.T, s Subject) {
	persist(t, s.Store, &process.Batch{Events: []event.Event{ev("t", "1")}})
	before := snapshot(t, s.Store)
	for _, b := range []*process.Batch{
		{Events: []event.Event{ev("t", "2"), ev("u", "1")}, Dropped: map[string]int{"t": 1}, Offset: first("events", 0, 0, 3)},
		{Events: []event.Event{ev("t", "3")}, Shard: 4, Offset: offset("events", 4, 10, 11)},
		{Dropped: map[string]int{"v": 2}, Offset: offset("events", 1, 0, 2)},
		{Offset: first("events", 2, 0, 1)},
	} {
		_, err := s.Store.Persist(context.Background(), b)
		if err == nil || errors.Is(err, process.ErrFenced) {
			t.Fatalf("Persist of a batch with offset %+v: err %v, want a refusal that is not ErrFenced", *b.Offset, err)
		}
		if after := snapshot(t, s.Store); after != before {
			t.Fatalf("a refused batch changed the store:\nbefore %+v\n after %+v", before, after)
		}
	}
	wantNew(t, persist(t, s.Store, &process.Batch{Events: []event.Event{ev("t", "1"), ev("t", "2")}}), false, true)
	wantCounts(t, s.Store, map[string][3]int64{"t": {3, 2, 1}})
	wantRows(t, s.Store, 2)
}

func testCancelledBefore(t *testing.T, s Subject) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := &process.Batch{
		Events:  []event.Event{ev("t", "1"), ev("t", "2")},
		Dropped: map[string]int{"t": 1},
	}
	offs, keepsOffsets := s.Store.(OffsetStore)
	if keepsOffsets {
		b.Offset = first("events", 0, 0, 3)
	}
	_, err := s.Store.Persist(ctx, b)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Persist with a cancelled context: err %v, want context.Canceled", err)
	}
	wantRows(t, s.Store, 0)
	wantCounts(t, s.Store, map[string][3]int64{})
	if keepsOffsets {
		wantOffsets(t, offs, "events", map[int]int64{})
	}
}

// testCancelledDuring cancels Persist at growing delays: each batch is then
// stored whole (rows, counters and, on an OffsetStore, offset) or not at all.
func testCancelledDuring(t *testing.T, s Subject) {
	const size = 200
	offs, keepsOffsets := s.Store.(OffsetStore)
	var committed int
	for i := range 25 {
		topic := fmt.Sprintf("t%02d", i)
		b := &process.Batch{Shard: i, Dropped: map[string]int{topic: 1}}
		if keepsOffsets {
			b.Offset = first("events", i, 0, size+1)
		}
		for j := range size {
			b.Events = append(b.Events, ev(topic, fmt.Sprint(j)))
		}
		// From 50µs, ×1.45 each time, to ~0.4s: early attempts fail, late ones commit.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(50e3*math.Pow(1.45, float64(i))))
		_, err := s.Store.Persist(ctx, b)
		cancel()

		// A Persist that gave up may leave its commit still running in the
		// database, and counters, rows and offset are read one after the
		// other, so one reading can straddle that commit. A partial batch
		// stays partial: it must still be there after two seconds of
		// readings.
		var (
			c           event.Counts
			rows        int
			next        int64
			hasOffset   bool
			whole, none bool
		)
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			c = counts(t, s.Store)[topic]
			rows = len(readAll(t, s.Store, topic, 1000))
			if keepsOffsets {
				next, hasOffset = offsets(t, offs, "events")[i]
			}
			whole = c == event.Counts{Topic: topic, Received: size + 1, Unique: size, Duplicates: 1} &&
				rows == size && hasOffset == keepsOffsets && (!keepsOffsets || next == size+1)
			none = c == event.Counts{} && rows == 0 && !hasOffset
			if whole || none || err == nil || time.Now().After(deadline) {
				break
			}
		}
		if whole {
			committed++
		}
		switch {
		case err == nil && !whole:
			t.Errorf("attempt %d succeeded but stored counts %+v, %d rows, offset %v %d", i, c, rows, hasOffset, next)
		case err != nil && !whole && !none:
			t.Errorf("attempt %d (%v) left a partial batch: counts %+v, %d rows, offset %v %d", i, err, c, rows, hasOffset, next)
		}
	}
	t.Logf("%d of 25 attempts committed", committed)
}
