package query

import (
	"context"
	"encoding/json"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/retention"
)

// Option configures the read handlers.
type Option func(*Handlers)

// WithRetention makes GET /stats report the retention policy in force.
func WithRetention(p retention.Policy) Option {
	return func(h *Handlers) { h.policy = &p }
}

// SizeFunc returns the events alive in the store and its bytes on disk.
type SizeFunc func(ctx context.Context) (events, bytes int64, err error)

// WithSize makes GET /stats report the store's size to keys that may read
// every topic.
func WithSize(f SizeFunc) Option {
	return func(h *Handlers) { h.size = f }
}

// Duration is a period of the policy as JSON: a Go duration string, or null
// for forever; left out of a response when no policy is known.
type Duration struct {
	set bool
	d   time.Duration
}

func duration(d time.Duration) Duration { return Duration{set: true, d: d} }

// IsZero reports a Duration never set, for omitzero.
func (d Duration) IsZero() bool { return !d.set }

// MarshalJSON writes the Go duration string, or null for forever.
func (d Duration) MarshalJSON() ([]byte, error) {
	if d.d <= 0 {
		return []byte("null"), nil
	}
	return json.Marshal(d.d.String())
}

// addRetention fills the retention and size fields of s for grant g.
func (h *Handlers) addRetention(ctx context.Context, g *auth.Grant, s *Stats) error {
	if p := h.policy; p != nil {
		s.Retention = duration(p.Default)
		s.DedupWindow = duration(p.DedupWindow)
		s.RetentionTopics = map[string]Duration{}
		for topic, d := range p.Topics {
			if g.Topic(topic) {
				s.RetentionTopics[topic] = duration(d)
			}
		}
	}
	// Whole-store figures: only for a key that may read every topic.
	if h.size != nil && g.EveryTopic() {
		events, bytes, err := h.size(ctx)
		if err != nil {
			return err
		}
		s.StoredEvents, s.StoreBytes = &events, &bytes
	}
	return nil
}
