package claimtest_test

import (
	"sync"
	"testing"

	"github.com/event-aggregator/event-aggregator/pkg/claim/claimtest"
	"github.com/event-aggregator/event-aggregator/pkg/claim/memory"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// The memory claimer lives here rather than in its package so the suite's
// own tests run against an implementation.
func TestMemory(t *testing.T) {
	var mu sync.Mutex
	tables := map[*testing.T]*memory.Shared{}
	claimtest.Run(t, func(t *testing.T, owner string, cfg claimtest.Config) process.Claimer {
		mu.Lock()
		defer mu.Unlock()
		s, ok := tables[t]
		if !ok {
			s = memory.NewShared(100_000)
			tables[t] = s
			t.Cleanup(func() {
				mu.Lock()
				defer mu.Unlock()
				delete(tables, t)
			})
		}
		return s.Claimer(owner, cfg.LeaseTTL, cfg.DedupWindow)
	})
}
