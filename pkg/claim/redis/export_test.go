package redis

import "time"

// WithClock replaces time.Now, so tests decide when a probe is due.
func WithClock(now func() time.Time) Option {
	return func(c *Claimer) { c.now = now }
}
