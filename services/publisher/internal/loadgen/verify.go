package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Stats is the part of GET /stats the verification reads.
type Stats struct {
	Received         int64    `json:"received"`
	UniqueProcessed  int64    `json:"unique_processed"`
	DuplicateDropped int64    `json:"duplicate_dropped"`
	Topics           []string `json:"topics"`
	Uptime           float64  `json:"uptime"`
}

// Verification statuses.
const (
	VerifyOK          = "ok"
	VerifyFailed      = "failed"
	VerifyUndecidable = "undecidable" // some events were never acknowledged
	VerifySkipped     = "skipped"
)

// Verification compares the aggregator's counters with what it acknowledged.
type Verification struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	// Settled is true when the counters reached the expected values or stopped changing.
	Settled       bool    `json:"settled"`
	SettleSeconds float64 `json:"settle_seconds"`

	ExpectedUnique        int64 `json:"expected_unique"` // distinct events acknowledged
	UniqueDelta           int64 `json:"unique_delta"`    // unique_processed growth
	MinReceived           int64 `json:"min_received"`    // events acknowledged, duplicates included
	ReceivedDelta         int64 `json:"received_delta"`  // received growth; more when retries re-delivered
	DuplicateDroppedDelta int64 `json:"duplicate_dropped_delta"`

	MissingTopics []string `json:"missing_topics,omitempty"` // topics of acknowledged events absent from /stats
	Baseline      Stats    `json:"baseline"`
	Final         Stats    `json:"final"`
}

// statsReader reads GET /stats.
type statsReader struct {
	client  *http.Client
	url     string
	apiKey  string
	timeout time.Duration
	policy  retryPolicy
}

// read gets /stats, retrying like a publish request.
func (r *statsReader) read(ctx context.Context) (Stats, error) {
	var s Stats
	_, err := r.policy.do(ctx, func(ctx context.Context) (time.Duration, error) {
		var err error
		s, err = r.readOnce(ctx)
		return -1, err
	})
	return s, err
}

func (r *statsReader) readOnce(parent context.Context) (Stats, error) {
	ctx, cancel := context.WithTimeout(parent, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return Stats{}, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if r.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.apiKey)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return Stats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return Stats{}, &StatusError{Code: resp.StatusCode, Body: strings.Join(strings.Fields(string(head)), " ")}
	}
	var s Stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return Stats{}, fmt.Errorf("decode stats: %w", err)
	}
	return s, nil
}

// settle polls /stats until unique_processed has grown by wantUnique and
// received by at least minReceived, or until neither counter changed for quiet,
// or until timeout. It returns the last stats read and whether they settled.
func (r *statsReader) settle(ctx context.Context, base Stats, wantUnique, minReceived int64,
	timeout, quiet, interval time.Duration,
) (Stats, bool, error) {
	deadline := time.Now().Add(timeout)
	var (
		last       Stats
		have       bool
		lastChange time.Time
		lastErr    error
	)
	for {
		s, err := r.readOnce(ctx)
		now := time.Now()
		switch {
		case err != nil:
			lastErr = err
		case s.UniqueProcessed-base.UniqueProcessed == wantUnique && s.Received-base.Received >= minReceived:
			return s, true, nil
		case !have || s.UniqueProcessed != last.UniqueProcessed || s.Received != last.Received:
			last, have, lastChange = s, true, now
		case now.Sub(lastChange) >= quiet:
			return s, true, nil
		default:
			last = s
		}
		if now.After(deadline) {
			if have {
				return last, false, nil
			}
			return Stats{}, false, fmt.Errorf("no stats within %v: %w", timeout, lastErr)
		}
		if err := sleep(ctx, min(interval, time.Until(deadline))); err != nil {
			return last, false, err
		}
	}
}

// judge fills in the verdict from the counters.
func (v *Verification) judge(unacknowledged int, topicsAcked []string) {
	v.UniqueDelta = v.Final.UniqueProcessed - v.Baseline.UniqueProcessed
	v.ReceivedDelta = v.Final.Received - v.Baseline.Received
	v.DuplicateDroppedDelta = v.Final.DuplicateDropped - v.Baseline.DuplicateDropped
	if v.Final.Topics != nil {
		for _, t := range topicsAcked {
			if !slices.Contains(v.Final.Topics, t) {
				v.MissingTopics = append(v.MissingTopics, t)
			}
		}
	}

	var msgs []string
	if unacknowledged > 0 {
		v.Status = VerifyUndecidable
		msgs = append(msgs, fmt.Sprintf(
			"%d distinct events were never acknowledged, so the expected count is unknown: unique_processed grew by %d, between %d and %d would be consistent",
			unacknowledged, v.UniqueDelta, v.ExpectedUnique, v.ExpectedUnique+int64(unacknowledged)))
	} else {
		switch d := v.UniqueDelta - v.ExpectedUnique; {
		case d < 0:
			msgs = append(msgs, fmt.Sprintf(
				"unique_processed grew by %d, expected %d: %d acknowledged events are missing", v.UniqueDelta, v.ExpectedUnique, -d))
		case d > 0:
			msgs = append(msgs, fmt.Sprintf(
				"unique_processed grew by %d, expected %d: %d more than acknowledged (another publisher, or duplicates stored twice)", v.UniqueDelta, v.ExpectedUnique, d))
		}
	}
	if v.ReceivedDelta < v.MinReceived {
		msgs = append(msgs, fmt.Sprintf(
			"received grew by %d, fewer than the %d events acknowledged", v.ReceivedDelta, v.MinReceived))
	}
	if !v.Settled && v.Status != VerifyUndecidable {
		msgs = append(msgs, "counters were still changing at the settle timeout")
	}
	// Every event received is either stored or dropped as a duplicate, in the
	// same transaction: the identity holds at any moment, whatever else runs.
	broken := false
	for _, s := range []struct {
		name string
		st   Stats
	}{{"before", v.Baseline}, {"after", v.Final}} {
		if s.st.Received != s.st.UniqueProcessed+s.st.DuplicateDropped {
			broken = true
			msgs = append(msgs, fmt.Sprintf("%s the run received %d ≠ unique_processed %d + duplicate_dropped %d",
				s.name, s.st.Received, s.st.UniqueProcessed, s.st.DuplicateDropped))
		}
	}

	switch {
	case broken:
		v.Status = VerifyFailed
	case v.Status == VerifyUndecidable:
	case len(msgs) > 0:
		v.Status = VerifyFailed
	default:
		v.Status = VerifyOK
		msgs = append(msgs, fmt.Sprintf("unique_processed grew by exactly the %d distinct events acknowledged", v.ExpectedUnique))
		if extra := v.ReceivedDelta - v.MinReceived; extra > 0 {
			msgs = append(msgs, fmt.Sprintf("received %d more than acknowledged (retries re-delivered)", extra))
		}
	}
	// Reported, not judged: the count is the contract under test.
	if len(v.MissingTopics) > 0 {
		msgs = append(msgs, "note: topics missing from /stats: "+strings.Join(v.MissingTopics, ", "))
	}
	v.Message = strings.Join(msgs, "; ")
}
