package loadgen

import (
	"context"
	"time"
)

// clock is the time source of the sending phase; tests inject a fake one to
// check latency accounting without wall-clock asserts.
type clock interface {
	Now() time.Time
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time                                   { return time.Now() }
func (realClock) Sleep(ctx context.Context, d time.Duration) error { return sleep(ctx, d) }
