// Package ingesttest is the contract every ingest.Publisher keeps: one suite,
// run against each bus (in-process and Kafka). Once Publish returns nil,
// every event of the call has reached the far side whole, each key's copies
// in the order they were published; duplicates are delivered, not dropped
// (the processing core counts them); a closed publisher refuses more.
package ingesttest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/ingest"
)

// Subject is one fresh publisher under test, with nothing delivered yet.
type Subject struct {
	Publisher ingest.Publisher
	// Delivered returns every event the far side holds (what a bus handed
	// its processor, what a topic stores), each key's copies in delivery
	// order.
	Delivered func(t *testing.T) []event.Event
	// Close shuts the publisher down; Publish must fail afterwards.
	Close func() error
}

// Run runs the contract suite; open returns a fresh Subject for each case
// and registers its cleanup on t.
func Run(t *testing.T, open func(t *testing.T) Subject) {
	cases := []struct {
		name string
		run  func(t *testing.T, s Subject)
	}{
		{"RoundTrip", testRoundTrip},
		{"ManyInOneCall", testManyInOneCall},
		{"CopiesInOrder", testCopiesInOrder},
		{"Empty", testEmpty},
		{"Concurrent", testConcurrent},
		{"AfterClose", testAfterClose},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, open(t)) })
	}
}

// testRoundTrip: every field arrives as published, whatever its bytes.
func testRoundTrip(t *testing.T, s Subject) {
	sent := []event.Event{
		{Topic: "orders", EventID: "e-1", Source: "shop-1", Timestamp: time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC),
			Payload: []byte(`{"total":12.5,"items":["a","b"],"note":"caf\u00e9 \"quoted\""}`)},
		{Topic: "orders/eu", EventID: "e-1", Source: "shop-2", Timestamp: time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC),
			Payload: []byte(`{}`)},
		{Topic: "ünïcode ✓", EventID: "id with spaces", Source: "s", Timestamp: time.Unix(0, 0).UTC(),
			Payload: []byte(`{"nested":{"deep":[1,2,{"x":null}]}}`)},
	}
	publish(t, s, sent)
	got := s.Delivered(t)
	if len(got) != len(sent) {
		t.Fatalf("delivered %d events, want %d", len(got), len(sent))
	}
	byKey := map[event.Key]event.Event{}
	for _, e := range got {
		byKey[e.Key()] = e
	}
	for _, want := range sent {
		e, ok := byKey[want.Key()]
		if !ok {
			t.Errorf("%v not delivered", want.Key())
			continue
		}
		if e.Source != want.Source || !e.Timestamp.Equal(want.Timestamp) || !bytes.Equal(e.Payload, want.Payload) {
			t.Errorf("delivered %+v\nwant      %+v", e, want)
		}
	}
}

// testManyInOneCall: one call of many events delivers each of them once.
func testManyInOneCall(t *testing.T, s Subject) {
	const n = 500
	sent := make([]event.Event, n)
	for i := range sent {
		sent[i] = ev("bulk", strconv.Itoa(i), i)
	}
	publish(t, s, sent)
	checkEach(t, s.Delivered(t), sent, 1)
}

// testCopiesInOrder: copies of one key, in one call and across calls, are
// all delivered, in the order they were published.
func testCopiesInOrder(t *testing.T, s Subject) {
	publish(t, s, []event.Event{ev("t", "a", 0), ev("t", "b", 0), ev("t", "a", 1)})
	publish(t, s, []event.Event{ev("t", "a", 2)})
	publish(t, s, []event.Event{ev("t", "b", 1), ev("t", "a", 3)})
	seqs := map[string]string{}
	for _, e := range s.Delivered(t) {
		seqs[e.EventID] += string(e.Payload)
	}
	want := map[string]string{"a": `{"seq":0}{"seq":1}{"seq":2}{"seq":3}`, "b": `{"seq":0}{"seq":1}`}
	for id, w := range want {
		if seqs[id] != w {
			t.Errorf("copies of %s delivered as %s, want %s", id, seqs[id], w)
		}
	}
	if len(seqs) != len(want) {
		t.Errorf("delivered keys %v, want %v", seqs, want)
	}
}

// testEmpty: an empty call succeeds and delivers nothing.
func testEmpty(t *testing.T, s Subject) {
	publish(t, s, nil)
	publish(t, s, []event.Event{})
	if got := s.Delivered(t); len(got) != 0 {
		t.Fatalf("an empty publish delivered %v", got)
	}
}

// testConcurrent: calls from many goroutines each deliver all their events.
func testConcurrent(t *testing.T, s Subject) {
	const callers, per = 16, 8
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		sent []event.Event
		errs []error
	)
	for c := range callers {
		wg.Go(func() {
			evs := make([]event.Event, per)
			for i := range evs {
				evs[i] = ev("concurrent", fmt.Sprintf("%d-%d", c, i), i)
			}
			err := s.Publisher.Publish(ctx, evs)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			sent = append(sent, evs...)
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d concurrent publishes failed, first: %v", len(errs), callers, errs[0])
	}
	checkEach(t, s.Delivered(t), sent, 1)
}

// testAfterClose: once closed, a publisher refuses events rather than
// losing them silently.
func testAfterClose(t *testing.T, s Subject) {
	publish(t, s, []event.Event{ev("t", "before", 0)})
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.Publisher.Publish(ctx, []event.Event{ev("t", "after", 0)}); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
}

func ev(topic, id string, seq int) event.Event {
	return event.Event{Topic: topic, EventID: id, Source: "ingesttest",
		Timestamp: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Payload: []byte(`{"seq":` + strconv.Itoa(seq) + `}`)}
}

func publish(t *testing.T, s Subject, events []event.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.Publisher.Publish(ctx, events); err != nil {
		t.Fatalf("publish %d events: %v", len(events), err)
	}
}

// checkEach checks that every sent event was delivered exactly times times,
// and nothing else.
func checkEach(t *testing.T, got, sent []event.Event, times int) {
	t.Helper()
	n := map[event.Key]int{}
	for _, e := range got {
		n[e.Key()]++
	}
	for _, e := range sent {
		if n[e.Key()] != times {
			t.Errorf("%v delivered %d times, want %d", e.Key(), n[e.Key()], times)
		}
	}
	if len(got) != len(sent)*times {
		t.Errorf("delivered %d events, want %d", len(got), len(sent)*times)
	}
}
