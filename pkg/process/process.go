// Package process is the processing core: claim each event, persist the
// batch in one store transaction, then mark the events done. The store's
// unique key is the only judge of what is new; the claimer is a shortcut that
// lets a known duplicate skip the store.
package process

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// Claim is what the claimer says about one event.
type Claim uint8

const (
	// Owned: this worker holds the lease; the store decides.
	Owned Claim = iota
	// Done: the event was stored before; drop it as a duplicate.
	Done
	// Leased: another worker holds a live lease. Not a verdict: the store
	// decides, so a lease of a crashed worker never loses an event.
	Leased
)

// Claimer leases events before they are stored and remembers them after.
type Claimer interface {
	Claim(ctx context.Context, keys []event.Key) ([]Claim, error)
	MarkDone(ctx context.Context, keys []event.Key) error
}

// Store persists a batch atomically: rows, counters and offsets in one
// transaction.
type Store interface {
	Persist(ctx context.Context, b *Batch) (Persisted, error)
}

// Batch is what one store transaction writes.
type Batch struct {
	// Events to insert, distinct keys, in processing order.
	Events []event.Event
	// Dropped counts per topic the duplicates known before the store was
	// asked (same key earlier in the batch, or a "done" claim). They are
	// counted as received and duplicate in the same transaction.
	Dropped map[string]int
	// Shard spreads the counter rows so writers never contend (the Kafka
	// partition in the distributed mode, 0 in the all-in-one).
	Shard int
	// Offset, when set, is recorded in the same transaction; the store fails
	// with ErrFenced when the stored offset is not Offset.From.
	Offset *Offset
}

// Offset is a consumed range of one Kafka partition: records [From, Next).
type Offset struct {
	Topic     string
	Partition int
	From      int64
	Next      int64
}

// Persisted tells which events of a batch were new.
type Persisted struct {
	New []bool // New[i] reports whether Batch.Events[i] was inserted
}

// ErrFenced reports that another consumer already committed past the batch's
// starting offset: this one is a zombie and must drop the batch.
var ErrFenced = fmt.Errorf("offset fenced: another consumer owns the partition")

// Result counts what one Process call did; Received == Unique + Duplicates.
type Result struct {
	Received   int
	Unique     int
	Duplicates int
}

// Processor runs the claim → persist → done protocol.
type Processor struct {
	claimer Claimer
	store   Store
	log     *slog.Logger
	obs     Observer
}

// Observer hears about each processed batch (metrics, traces). Optional.
type Observer interface {
	Processed(ctx context.Context, r Result, claimErr error)
}

// New returns a Processor. claimer may be nil: the store alone then decides.
func New(claimer Claimer, store Store, log *slog.Logger, obs Observer) *Processor {
	return &Processor{claimer: claimer, store: store, log: log, obs: obs}
}

// Process stores events exactly once and counts every duplicate. On error
// nothing was committed and the same events may be processed again.
func (p *Processor) Process(ctx context.Context, events []event.Event, shard int, off *Offset) (Result, error) {
	b := &Batch{Shard: shard, Offset: off, Dropped: map[string]int{}}
	keys := make([]event.Key, 0, len(events))
	seen := make(map[event.Key]struct{}, len(events))
	for i := range events {
		k := events[i].Key()
		if _, dup := seen[k]; dup {
			b.Dropped[k.Topic]++
			p.dropped(ctx, k, "repeated in batch")
			continue
		}
		seen[k] = struct{}{}
		keys = append(keys, k)
	}

	candidates := keys
	var claimErr error
	if p.claimer != nil && len(keys) > 0 {
		claims, err := p.claimer.Claim(ctx, keys)
		if err != nil {
			// Redis is a shortcut, not the judge: go on through the store.
			claimErr = err
			p.log.WarnContext(ctx, "claim failed; the store alone decides", "err", err)
		} else {
			candidates = keys[:0:0]
			for i, c := range claims {
				if c == Done {
					b.Dropped[keys[i].Topic]++
					p.dropped(ctx, keys[i], "already done")
					continue
				}
				candidates = append(candidates, keys[i])
			}
		}
	}

	b.Events = make([]event.Event, 0, len(candidates))
	want := make(map[event.Key]struct{}, len(candidates))
	for _, k := range candidates {
		want[k] = struct{}{}
	}
	for i := range events {
		k := events[i].Key()
		if _, ok := want[k]; ok {
			b.Events = append(b.Events, events[i])
			delete(want, k) // the first copy wins
		}
	}

	persisted, err := p.store.Persist(ctx, b)
	if err != nil {
		return Result{}, fmt.Errorf("persist batch: %w", err)
	}
	res := Result{Received: len(events)}
	for i, isNew := range persisted.New {
		if isNew {
			res.Unique++
		} else {
			p.dropped(ctx, b.Events[i].Key(), "already stored")
		}
	}
	res.Duplicates = res.Received - res.Unique

	if p.claimer != nil && claimErr == nil && len(candidates) > 0 {
		// After the commit: remember the events so later copies skip the
		// store. A failure costs speed only.
		if err := p.claimer.MarkDone(ctx, candidates); err != nil {
			p.log.WarnContext(ctx, "mark done failed", "err", err)
		}
	}
	if p.obs != nil {
		p.obs.Processed(ctx, res, claimErr)
	}
	return res, nil
}

func (p *Processor) dropped(ctx context.Context, k event.Key, why string) {
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.DebugContext(ctx, "duplicate dropped", "topic", k.Topic, "event_id", k.EventID, "why", why)
	}
}
