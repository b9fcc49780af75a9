package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	maxBackoff    = 5 * time.Second
	maxRetryAfter = time.Minute // a server's Retry-After is honoured up to this
)

// StatusError is a non-2xx answer.
type StatusError struct {
	Code int
	Body string // the start of the answer, for the summary
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("HTTP %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// retryable tells whether another attempt may succeed: 5xx, 429, 408, and
// anything that never produced an answer (timeouts, refused or reset connections).
func retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusTooManyRequests || se.Code == http.StatusRequestTimeout
	}
	return true
}

// attemptFunc makes one attempt. retryAfter >= 0 is the server's requested wait.
type attemptFunc func(ctx context.Context) (retryAfter time.Duration, err error)

// retryPolicy repeats failed attempts with exponential backoff and full jitter.
type retryPolicy struct {
	retries int
	base    time.Duration
}

// do returns the number of attempts made and the last error. It stops early on
// a non-retryable error or when ctx ends.
func (p retryPolicy) do(ctx context.Context, attempt attemptFunc) (int, error) {
	for n := 0; ; n++ {
		retryAfter, err := attempt(ctx)
		if err == nil || ctx.Err() != nil || !retryable(err) || n == p.retries {
			if ctx.Err() != nil && err != nil {
				err = fmt.Errorf("%w (%w)", ctx.Err(), err)
			}
			return n + 1, err
		}
		delay := retryAfter
		if delay < 0 {
			delay = p.backoff(n)
		}
		if err := sleep(ctx, delay); err != nil {
			return n + 1, err
		}
	}
}

// backoff is the delay before retry n+1: base·2ⁿ capped, then drawn from [d/2, d).
func (p retryPolicy) backoff(n int) time.Duration {
	d := p.base << min(n, 20)
	if d <= 0 || d > maxBackoff {
		d = maxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

// parseRetryAfter reads delay-seconds or an HTTP date; -1 when absent or unreadable.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return -1
	}
	if s, err := strconv.Atoi(h); err == nil {
		if s < 0 {
			return -1
		}
		return time.Duration(min(s, int(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return -1
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
