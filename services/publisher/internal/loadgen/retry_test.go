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

func TestBackoffBounds(t *testing.T) {
	p := retryPolicy{retries: 10, base: 100 * time.Millisecond}
	for n := range 12 {
		d := min(p.base<<n, maxBackoff)
		for range 50 {
			if got := p.backoff(n); got < d/2 || got > d {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, got, d/2, d)
			}
		}
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
