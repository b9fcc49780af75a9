// Package retention deletes stored events once they are older than their
// topic's retention period, in small batches, and forgets the keys of deleted
// events once the dedup window is over (docs/retention.md).
package retention

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// Policy is how long events and the keys of deleted events are kept. A zero
// duration is forever.
type Policy struct {
	// Default is the retention period of the topics Topics does not name.
	Default time.Duration
	// Topics overrides Default for some topics.
	Topics map[string]time.Duration
	// DedupWindow is how long, counted from when an event was stored, its
	// key is remembered: a copy arriving within it is a duplicate, even when
	// the event itself is deleted. Never shorter than any retention period.
	DedupWindow time.Duration
}

// For returns the retention period of topic (0: forever).
func (p Policy) For(topic string) time.Duration {
	if d, ok := p.Topics[topic]; ok {
		return d
	}
	return p.Default
}

// Deletes reports whether the policy ever deletes an event.
func (p Policy) Deletes() bool {
	if p.Default > 0 {
		return true
	}
	for _, d := range p.Topics {
		if d > 0 {
			return true
		}
	}
	return false
}

// Store is what retention needs of an event store.
type Store interface {
	// Counts lists the topics (with their counters).
	Counts(ctx context.Context) ([]event.Counts, error)
	// Expire deletes up to limit events of topic stored before cutoff, in
	// one short transaction, keeping their keys when keepKeys.
	Expire(ctx context.Context, topic string, cutoff time.Time, keepKeys bool, limit int) (int, error)
	// Forget deletes up to limit kept keys of events stored before cutoff.
	Forget(ctx context.Context, cutoff time.Time, limit int) (int, error)
}

// Runner applies a Policy to a Store.
type Runner struct {
	store  Store
	policy Policy
	batch  int
	log    *slog.Logger
	now    func() time.Time
}

// New returns a Runner that deletes at most batch rows per transaction.
func New(s Store, p Policy, batch int, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{store: s, policy: p, batch: max(batch, 1), log: log, now: time.Now}
}

// Run applies the policy every interval until ctx ends. Errors are logged and
// the next round tries again: a failed batch changed nothing.
func (r *Runner) Run(ctx context.Context, interval time.Duration) {
	if !r.policy.Deletes() {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.Once(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "retention round failed; retrying next round", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once deletes every event past its topic's retention and forgets every key
// past the dedup window, batch by batch, and returns how many events it
// deleted.
func (r *Runner) Once(ctx context.Context) (int, error) {
	counts, err := r.store.Counts(ctx)
	if err != nil {
		return 0, fmt.Errorf("retention: list topics: %w", err)
	}
	now := r.now()
	total := 0
	for _, c := range counts {
		keep := r.policy.For(c.Topic)
		if keep <= 0 {
			continue
		}
		// A key outlives its event only when the window is longer.
		keepKeys := r.policy.DedupWindow == 0 || r.policy.DedupWindow > keep
		cutoff := now.Add(-keep)
		for {
			n, err := r.store.Expire(ctx, c.Topic, cutoff, keepKeys, r.batch)
			if err != nil {
				return total, fmt.Errorf("retention: topic %q: %w", c.Topic, err)
			}
			total += n
			if n < r.batch {
				break
			}
		}
	}
	if w := r.policy.DedupWindow; w > 0 {
		for {
			n, err := r.store.Forget(ctx, now.Add(-w), r.batch)
			if err != nil {
				return total, fmt.Errorf("retention: forget keys: %w", err)
			}
			if n < r.batch {
				break
			}
		}
	}
	if total > 0 {
		r.log.InfoContext(ctx, "retention deleted events", "events", total)
	}
	return total, nil
}
