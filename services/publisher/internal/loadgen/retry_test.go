package loadgen

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		h    string
		want time.Duration
	}{
		{"", -1},
		{"0", 0},
		{"3", 3 * time.Second},
		{"86400", maxRetryAfter},
		{"-1", -1},
		{"soon", -1},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := parseRetryAfter(tc.h, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.h, got, tc.want)
		}
	}
}

// TestBackoffBounds: the nth delay is jittered around base·2ⁿ, capped, and
// the jitter really varies.
func TestBackoffBounds(t *testing.T) {
	p := retryPolicy{retries: 10, base: 100 * time.Millisecond}
	firsts := map[time.Duration]bool{}
	for range 50 {
		b := p.newBackOff()
		for n := range 12 {
			d := min(p.base<<n, maxBackoff)
			got := b.NextBackOff()
			if got < d/2 || got > d*3/2 {
				t.Fatalf("delay %d = %v, want within [%v, %v]", n, got, d/2, d*3/2)
			}
			if n == 0 {
				firsts[got] = true
			}
		}
	}
	if len(firsts) < 10 {
		t.Errorf("50 first delays took %d values: no jitter", len(firsts))
	}
}

// TestRetryPolicyHonoursRetryAfter: the server's wait replaces the backoff,
// and the last failure is what the caller sees.
func TestRetryPolicyHonoursRetryAfter(t *testing.T) {
	p := retryPolicy{retries: 2, base: time.Hour} // a backoff delay would time the test out
	calls := 0
	n, err := p.do(t.Context(), func(context.Context) (time.Duration, error) {
		calls++
		return 0, &StatusError{Code: 503}
	})
	var se *StatusError
	if n != 3 || calls != 3 || !errors.As(err, &se) || se.Code != 503 {
		t.Errorf("after 503 with Retry-After: 0: %d attempts, %d calls, err %v; want 3, 3, the 503", n, calls, err)
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&StatusError{Code: 500}, true},
		{&StatusError{Code: 503}, true},
		{&StatusError{Code: 429}, true},
		{&StatusError{Code: 408}, true},
		{&StatusError{Code: 400}, false},
		{&StatusError{Code: 401}, false},
		{&StatusError{Code: 422}, false},
		{context.DeadlineExceeded, true},
		{errors.New("connection reset by peer"), true},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %t, want %t", tc.err, got, tc.want)
		}
	}
}

func TestRetryPolicyStops(t *testing.T) {
	p := retryPolicy{retries: 3, base: time.Nanosecond}
	calls := 0
	n, err := p.do(t.Context(), func(context.Context) (time.Duration, error) {
		calls++
		return 0, &StatusError{Code: 503}
	})
	if n != 4 || calls != 4 || err == nil {
		t.Errorf("after persistent 503: %d attempts, %d calls, err %v; want 4, 4, an error", n, calls, err)
	}
	calls = 0
	n, _ = p.do(t.Context(), func(context.Context) (time.Duration, error) {
		calls++
		return -1, &StatusError{Code: 422}
	})
	if n != 1 || calls != 1 {
		t.Errorf("after 422: %d attempts, want 1", n)
	}
}
