package process_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// claimer answers each key with the claim scripted for its event ID (Owned
// when none), or fails; it records the MarkDone calls.
type claimer struct {
	claims     map[string]process.Claim
	err        error
	markCalls  int
	lastMarked []string
}

func (c *claimer) Claim(_ context.Context, keys []event.Key, _ *process.Offset) ([]process.Claim, error) {
	if c.err != nil {
		return nil, c.err
	}
	out := make([]process.Claim, len(keys))
	for i, k := range keys {
		out[i] = c.claims[k.EventID]
	}
	return out, nil
}

func (c *claimer) MarkDone(_ context.Context, keys []event.Key, _ *process.Offset) error {
	c.markCalls++
	c.lastMarked = c.lastMarked[:0]
	for _, k := range keys {
		c.lastMarked = append(c.lastMarked, k.EventID)
	}
	return nil
}

// TestProcessDecisions is the processing core's decision table: for one
// event, what the claimer says, whether the claimer and the store fail, and
// whether the row exists already decide what goes to the store, what is
// counted and what is marked done.
func TestProcessDecisions(t *testing.T) {
	claimErr := errors.New("redis down")
	persistErr := errors.New("postgres down")
	cases := []struct {
		name         string
		claim        process.Claim
		claimErr     error
		persistErr   error
		storedBefore bool

		wantInserted bool // the event is in the batch sent to the store
		wantDropped  int  // duplicates counted before the store (Batch.Dropped)
		wantRes      process.Result
		wantMarked   bool // MarkDone was called with the event
		wantErr      error
	}{
		{name: "owned, new", claim: process.Owned,
			wantInserted: true, wantRes: process.Result{Received: 1, Unique: 1}, wantMarked: true},
		{name: "owned, stored before", claim: process.Owned, storedBefore: true,
			wantInserted: true, wantRes: process.Result{Received: 1, Duplicates: 1}, wantMarked: true},
		{name: "owned, persist fails", claim: process.Owned, persistErr: persistErr,
			wantInserted: true, wantErr: persistErr},
		{name: "done", claim: process.Done,
			wantDropped: 1, wantRes: process.Result{Received: 1, Duplicates: 1}},
		{name: "done, persist fails", claim: process.Done, persistErr: persistErr,
			wantDropped: 1, wantErr: persistErr},
		// Another worker's lease is not a verdict: the store decides.
		{name: "leased, new", claim: process.Leased,
			wantInserted: true, wantRes: process.Result{Received: 1, Unique: 1}, wantMarked: true},
		{name: "leased, stored before", claim: process.Leased, storedBefore: true,
			wantInserted: true, wantRes: process.Result{Received: 1, Duplicates: 1}, wantMarked: true},
		{name: "leased, persist fails", claim: process.Leased, persistErr: persistErr,
			wantInserted: true, wantErr: persistErr},
		// A failed claim says nothing: whatever it would have answered, the
		// store alone decides and nothing is marked done.
		{name: "claim fails, new", claim: process.Done, claimErr: claimErr,
			wantInserted: true, wantRes: process.Result{Received: 1, Unique: 1}},
		{name: "claim fails, stored before", claim: process.Done, claimErr: claimErr, storedBefore: true,
			wantInserted: true, wantRes: process.Result{Received: 1, Duplicates: 1}},
		{name: "claim and persist fail", claim: process.Owned, claimErr: claimErr, persistErr: persistErr,
			wantInserted: true, wantErr: persistErr},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := &claimer{claims: map[string]process.Claim{"e1": c.claim}, err: c.claimErr}
			st := &store{stored: map[string]bool{"e1": c.storedBefore}, err: c.persistErr}
			obs := &observer{}
			p := process.New(cl, st, slog.New(slog.DiscardHandler), obs)

			res, err := p.Process(context.Background(), events("e1"), 2, nil)
			if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Fatalf("err %v, want %v", err, c.wantErr)
			}
			if res != c.wantRes {
				t.Errorf("result %+v, want %+v", res, c.wantRes)
			}

			// The store is asked exactly once, even when nothing is left to
			// insert: the dropped duplicates are counted in its transaction.
			if st.calls != 1 {
				t.Fatalf("store asked %d times, want 1", st.calls)
			}
			b := st.last
			if inserted := len(b.Events) == 1 && b.Events[0].EventID == "e1"; inserted != c.wantInserted || len(b.Events) > 1 {
				t.Errorf("batch events %v, want e1 inserted: %v", b.Events, c.wantInserted)
			}
			if got := b.Dropped["orders"]; got != c.wantDropped {
				t.Errorf("batch dropped %v, want orders: %d", b.Dropped, c.wantDropped)
			}
			if b.Shard != 2 {
				t.Errorf("batch shard %d, want 2", b.Shard)
			}

			if c.wantMarked && (cl.markCalls != 1 || !slices.Equal(cl.lastMarked, []string{"e1"})) ||
				!c.wantMarked && cl.markCalls != 0 {
				t.Errorf("MarkDone called %d times, last with %v; want e1 marked: %v", cl.markCalls, cl.lastMarked, c.wantMarked)
			}

			// The observer hears of committed batches only, with the claim
			// error that made the store decide alone.
			if c.wantErr != nil {
				if len(obs.results) != 0 {
					t.Errorf("observer heard %v of a batch that was not committed", obs.results)
				}
				return
			}
			if len(obs.results) != 1 || obs.results[0] != res {
				t.Errorf("observer heard %v, want [%+v]", obs.results, res)
			}
			if !errors.Is(obs.claimErr, c.claimErr) || (obs.claimErr == nil) != (c.claimErr == nil) {
				t.Errorf("observer heard claim error %v, want %v", obs.claimErr, c.claimErr)
			}
		})
	}
}

// TestProcessMixedBatch: one batch with every claim outcome and a repeat;
// only the first copy of a key is claimed, and MarkDone gets exactly the keys
// the store judged, in batch order.
func TestProcessMixedBatch(t *testing.T) {
	cl := &claimer{claims: map[string]process.Claim{
		"owned": process.Owned, "done": process.Done, "leased": process.Leased, "old": process.Owned,
	}}
	st := &store{stored: map[string]bool{"old": true}}
	p := process.New(cl, st, slog.New(slog.DiscardHandler), nil)

	res, err := p.Process(context.Background(), events("owned", "done", "leased", "owned", "old"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (process.Result{Received: 5, Unique: 2, Duplicates: 3}); res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	var ids []string
	for _, e := range st.last.Events {
		ids = append(ids, e.EventID)
	}
	if want := []string{"owned", "leased", "old"}; !slices.Equal(ids, want) {
		t.Errorf("inserted %v, want %v", ids, want)
	}
	if got := st.last.Dropped["orders"]; got != 2 { // the repeat and the done one
		t.Errorf("dropped before the store %d, want 2", got)
	}
	if want := []string{"owned", "leased", "old"}; cl.markCalls != 1 || !slices.Equal(cl.lastMarked, want) {
		t.Errorf("MarkDone called %d times, last with %v; want once with %v", cl.markCalls, cl.lastMarked, want)
	}
}
