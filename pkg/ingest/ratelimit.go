package ingest

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// RateLimit bounds how fast one API key may publish, in events. Each key
// has its own token bucket; without keys every client shares one.
type RateLimit struct {
	EventsPerSecond float64 // 0: no limit
	Burst           int     // most events at once; 0: one second of EventsPerSecond
}

// limiters are the token buckets of the keys, made on first use.
type limiters struct {
	limit rate.Limit
	burst int

	mu    sync.Mutex
	byKey map[string]*rate.Limiter

	requests, events *prometheus.CounterVec
}

func newLimiters(rl RateLimit, reg prometheus.Registerer) *limiters {
	if rl.EventsPerSecond <= 0 {
		return nil
	}
	burst := rl.Burst
	if burst <= 0 {
		burst = max(1, int(math.Ceil(rl.EventsPerSecond)))
	}
	l := &limiters{
		limit: rate.Limit(rl.EventsPerSecond), burst: burst, byKey: map[string]*rate.Limiter{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aggregator_rate_limited_requests_total", Help: "Publish requests refused with 429 by the rate limit, by API key name.",
		}, []string{"key"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aggregator_rate_limited_events_total", Help: "Events in publish requests refused with 429 by the rate limit, by API key name.",
		}, []string{"key"}),
	}
	if reg != nil {
		reg.MustRegister(l.requests, l.events)
	}
	return l
}

// take spends n events of key's bucket. It returns how long to wait when
// the bucket lacks them (nothing is spent then), and false when n is more
// than the bucket can ever hold.
func (l *limiters) take(key string, n int, now time.Time) (time.Duration, bool) {
	if n > l.burst {
		return 0, false
	}
	l.mu.Lock()
	lim, ok := l.byKey[key]
	if !ok {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.byKey[key] = lim
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, n)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		label := keyLabel(key)
		l.requests.WithLabelValues(label).Inc()
		l.events.WithLabelValues(label).Add(float64(n))
		return d, true
	}
	return 0, true
}

// keyLabel names the shared bucket of a server without keys.
func keyLabel(key string) string {
	if key == "" {
		return "none"
	}
	return key
}

// retryAfterSeconds rounds a wait up to whole seconds, at least one.
func retryAfterSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
