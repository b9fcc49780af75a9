// Package memory is the in-process Claimer of the all-in-one mode: the same
// lease protocol as Redis, held in a bounded map.
package memory

import (
	"context"
	"sync"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// Claimer remembers at most Capacity keys; the oldest are forgotten first.
// Forgetting is safe: the store still rejects a duplicate, only slower.
type Claimer struct {
	owner       string
	leaseTTL    time.Duration
	dedupWindow time.Duration
	now         func() time.Time
	*table      // one per New; shared by the Claimers of a Shared
}

type table struct {
	capacity int

	mu    sync.Mutex
	items map[event.Key]entry
	order []event.Key // insertion order, a ring of at most capacity keys
	head  int
}

type entry struct {
	owner   string // "" when done
	expires time.Time
	// at is the range of the batch that stored the event, when done.
	at *process.Offset
}

// New returns a Claimer for one owner.
func New(owner string, leaseTTL, dedupWindow time.Duration, capacity int) *Claimer {
	return NewShared(capacity).Claimer(owner, leaseTTL, dedupWindow)
}

// Claim leases each key that is neither done nor leased by another owner.
// A done mark that process.TrustDone rejects for at reads Leased.
func (c *Claimer) Claim(_ context.Context, keys []event.Key, at *process.Offset) ([]process.Claim, error) {
	now := c.now()
	out := make([]process.Claim, len(keys))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range keys {
		e, ok := c.items[k]
		switch {
		case ok && now.Before(e.expires) && e.owner == "" && process.TrustDone(e.at, at):
			out[i] = process.Done
		case ok && now.Before(e.expires) && e.owner == "":
			out[i] = process.Leased
		case ok && now.Before(e.expires) && e.owner != c.owner:
			out[i] = process.Leased
		default:
			c.put(k, entry{owner: c.owner, expires: now.Add(c.leaseTTL)}, ok)
			out[i] = process.Owned
		}
	}
	return out, nil
}

// MarkDone records keys as stored for the dedup window, by the batch that
// consumed at.
func (c *Claimer) MarkDone(_ context.Context, keys []event.Key, at *process.Offset) error {
	exp := c.now().Add(c.dedupWindow)
	if at != nil {
		cp := *at // the caller's may change
		at = &cp
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		_, ok := c.items[k]
		c.put(k, entry{expires: exp, at: at}, ok)
	}
	return nil
}

func (c *Claimer) put(k event.Key, e entry, exists bool) {
	c.items[k] = e
	if exists {
		return
	}
	if len(c.order) < c.capacity {
		c.order = append(c.order, k)
		return
	}
	delete(c.items, c.order[c.head])
	c.order[c.head] = k
	c.head = (c.head + 1) % c.capacity
}
