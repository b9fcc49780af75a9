package memory

import (
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// Shared is one claim table used by several owners, as the workers of the
// distributed mode share one Redis.
type Shared struct {
	t *table
}

// NewShared returns a table that remembers at most capacity keys.
func NewShared(capacity int) *Shared {
	return &Shared{t: &table{capacity: capacity, items: make(map[event.Key]entry)}}
}

// Claimer returns a Claimer for owner on the shared table.
func (s *Shared) Claimer(owner string, leaseTTL, dedupWindow time.Duration) *Claimer {
	return &Claimer{owner: owner, leaseTTL: leaseTTL, dedupWindow: dedupWindow, now: time.Now, table: s.t}
}
