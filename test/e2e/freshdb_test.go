package e2e

import (
	"context"
	"testing"
	"time"
)

// TestFreshDatabaseSameRedis: a second database (a reset, a restore, another
// deployment) behind the same Redis receives the very same events. The first
// database's "done" marks must not make it drop them: every event is stored
// again, exactly once, and counted as unique.
func TestFreshDatabaseSameRedis(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	runID := "fresh-" + randomHex(6)
	args := []string{"--events", "3000", "--duplicates", "0.2", "--topics", "5", "--batch", "200",
		"--concurrency", "4", "--run-id", runID, "--seed", "7"}

	first := newStack(t, stackOptions{workers: 1})
	rep := first.mustPublish(t, ctx, args...)
	c1 := first.checkExact(t, ctx, rep, 0)

	second := newStack(t, stackOptions{workers: 1})
	if second.redisURL != first.redisURL {
		t.Fatalf("the stacks use different Redis servers (%s, %s): the test proves nothing", first.redisURL, second.redisURL)
	}
	rep = second.mustPublish(t, ctx, args...)
	c2 := second.checkExact(t, ctx, rep, 0)
	if c2.unique != 3000 || c1.unique != 3000 {
		t.Fatalf("unique %d then %d, want 3000 in each database", c1.unique, c2.unique)
	}
}
