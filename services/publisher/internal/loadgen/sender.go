package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sender posts request bodies to /publish, retrying the identical body: a retry
// after a timeout or a 5xx may deliver events the server already stored, which
// is the at-least-once behaviour the aggregator must absorb.
type sender struct {
	client      *http.Client
	url         string
	apiKey      string
	contentType string
	timeout     time.Duration
	policy      retryPolicy
	clock       clock
}

// tally is one worker's counts, merged after the workers stop.
type tally struct {
	requests  int // HTTP attempts
	latencies []time.Duration
	responses map[string]int // status code, "timeout" or "error" → attempts
}

func newTally() *tally { return &tally{responses: map[string]int{}} }

func (t *tally) merge(o *tally) {
	t.requests += o.requests
	t.latencies = append(t.latencies, o.latencies...)
	for k, v := range o.responses {
		t.responses[k] += v
	}
}

// send delivers body and returns the number of attempts and the last error.
// A non-zero due is when the request was scheduled (open loop): the first
// attempt's latency counts from then, including any wait for a free client.
func (s *sender) send(ctx context.Context, body []byte, t *tally, due time.Time) (int, error) {
	return s.policy.do(ctx, func(ctx context.Context) (time.Duration, error) {
		from := due
		due = time.Time{}
		return s.attempt(ctx, body, t, from)
	})
}

func (s *sender) attempt(parent context.Context, body []byte, t *tally, due time.Time) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(parent, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return -1, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", s.contentType)
	if s.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+s.apiKey)
	}

	start := s.clock.Now()
	if !due.IsZero() && due.Before(start) {
		start = due
	}
	retryAfter, err := s.exchange(req)
	if err != nil && parent.Err() != nil {
		return -1, err // interrupted: neither a latency nor a response worth counting
	}
	t.requests++
	t.latencies = append(t.latencies, s.clock.Now().Sub(start))
	var se *StatusError
	switch {
	case err == nil:
		t.responses["202"]++ // any 2xx; /publish answers 202
	case errors.As(err, &se):
		t.responses[strconv.Itoa(se.Code)]++
	case errors.Is(err, context.DeadlineExceeded):
		t.responses["timeout"]++
		err = fmt.Errorf("timeout after %v: %w", s.timeout, err)
	default:
		t.responses["error"]++
	}
	return retryAfter, err
}

// exchange does the round trip and reads the whole answer, so the connection
// is reused and the latency covers the response body.
func (s *sender) exchange(req *http.Request) (time.Duration, error) {
	resp, err := s.client.Do(req)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return -1, fmt.Errorf("read answer: %w", err)
		}
		return -1, nil
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		&StatusError{Code: resp.StatusCode, Body: strings.Join(strings.Fields(string(head)), " ")}
}

// pacer spaces requests so that events go out at a target rate across all
// workers. Each request reserves len/rate seconds after the previous one.
type pacer struct {
	mu       sync.Mutex
	clock    clock
	next     time.Time
	perEvent float64 // seconds
	// open keeps the schedule fixed: a request that is late stays due at its
	// slot and the ones after it are not pushed back (open loop).
	open bool
}

const pacerSlack = 20 * time.Millisecond

func newPacer(rate float64, open bool, c clock) *pacer {
	if rate <= 0 {
		return nil
	}
	return &pacer{perEvent: 1 / rate, open: open, clock: c}
}

// wait sleeps until the request's slot and returns the time it was due; zero
// when unpaced.
func (p *pacer) wait(ctx context.Context, events int) (time.Time, error) {
	if p == nil {
		return time.Time{}, ctx.Err()
	}
	p.mu.Lock()
	now := p.clock.Now()
	// Closed loop: falling a little behind (sleep overshoot) is made up; a
	// longer stall is not saved up for a burst.
	if p.next.IsZero() || (!p.open && p.next.Before(now.Add(-pacerSlack))) {
		p.next = now
	}
	at := p.next
	p.next = p.next.Add(time.Duration(float64(events) * p.perEvent * float64(time.Second)))
	p.mu.Unlock()
	return at, p.clock.Sleep(ctx, at.Sub(now))
}
