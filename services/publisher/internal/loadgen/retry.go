package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
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

// retryPolicy repeats failed attempts with exponential backoff and jitter, so
// that clients failed by one outage do not all come back at the same instant.
type retryPolicy struct {
	retries int
	base    time.Duration
}

// newBackOff doubles the delay from base up to maxBackoff; each delay is
// drawn from [d/2, 3d/2] around it.
func (p retryPolicy) newBackOff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = p.base
	b.Multiplier = 2
	b.RandomizationFactor = 0.5
	b.MaxInterval = maxBackoff
	return b
}

// do returns the number of attempts made and the last error. It stops early on
// a non-retryable error or when ctx ends. A server's Retry-After replaces the
// backoff delay.
func (p retryPolicy) do(ctx context.Context, attempt attemptFunc) (int, error) {
	n := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		n++
		retryAfter, err := attempt(ctx)
		switch {
		case err == nil:
			return struct{}{}, nil
		case ctx.Err() != nil:
			return struct{}{}, backoff.Permanent(fmt.Errorf("%w (%w)", ctx.Err(), err))
		case !retryable(err):
			return struct{}{}, backoff.Permanent(err)
		case retryAfter >= 0:
			return struct{}{}, &serverWait{err: err, wait: &backoff.RetryAfterError{Duration: retryAfter}}
		}
		return struct{}{}, err
	}, backoff.WithBackOff(p.newBackOff()), backoff.WithMaxTries(uint(p.retries)+1), backoff.WithMaxElapsedTime(0))
	return n, err
}

// serverWait is a failed attempt whose answer said how long to wait: it reads
// as the failure, and tells the backoff the wait.
type serverWait struct {
	err  error
	wait *backoff.RetryAfterError
}

func (e *serverWait) Error() string   { return e.err.Error() }
func (e *serverWait) Unwrap() []error { return []error{e.err, e.wait} }

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
