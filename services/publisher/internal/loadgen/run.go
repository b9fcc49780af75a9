package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Report is the outcome of a run; its JSON form is the --json summary.
type Report struct {
	RunID       string  `json:"run_id"`
	URL         string  `json:"url"`
	Seed        uint64  `json:"seed"`
	Topics      int     `json:"topics"`
	Batch       int     `json:"batch"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate"`
	OpenLoop    bool    `json:"open_loop"`
	IDs         string  `json:"ids"`
	NDJSON      bool    `json:"ndjson"`

	EventsPlanned  int `json:"events_planned"`
	EventsSent     int `json:"events_sent"` // first attempts only, duplicates included
	DistinctEvents int `json:"distinct_events"`
	DuplicatesSent int `json:"duplicates_sent"`
	// Planned placement of the re-sends.
	DuplicatesInBatch int `json:"duplicates_in_batch"`
	DuplicatesSoon    int `json:"duplicates_soon"`
	DuplicatesLate    int `json:"duplicates_late"`

	EventsAcknowledged   int `json:"events_acknowledged"`
	DistinctAcknowledged int `json:"distinct_acknowledged"`
	// Distinct events sent but never acknowledged after all retries.
	Unacknowledged int `json:"unacknowledged_events"`

	Requests     int            `json:"requests"` // HTTP attempts, retries included
	Retries      int            `json:"retries"`
	ResentEvents int            `json:"resent_events"` // events carried again by retries
	Failures     int            `json:"failures"`      // requests that failed after all retries
	Responses    map[string]int `json:"responses"`     // attempts by status code, "timeout" or "error"
	FirstError   string         `json:"first_error,omitempty"`

	ElapsedSeconds    float64 `json:"elapsed_seconds"` // the sending phase
	EventsPerSecond   float64 `json:"events_per_second"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	Latency           Latency `json:"latency_ms"`

	Interrupted  bool          `json:"interrupted"`
	Verification *Verification `json:"verification,omitempty"`
}

// Problems lists why the run should exit non-zero; empty means success.
func (r *Report) Problems() []string {
	var p []string
	if r.Interrupted {
		p = append(p, "interrupted before every event was sent")
	}
	if r.Unacknowledged > 0 {
		msg := fmt.Sprintf("%d distinct events were never acknowledged after all retries", r.Unacknowledged)
		if r.FirstError != "" {
			msg += " (first error: " + r.FirstError + ")"
		}
		p = append(p, msg)
	}
	if v := r.Verification; v != nil && v.Status != VerifyOK && v.Status != VerifySkipped {
		p = append(p, "verification "+v.Status+": "+v.Message)
	}
	return p
}

// Run publishes the planned events and, if cfg.Verify, checks the aggregator's
// counters. Verification failures are in the report, not the error; the error
// is for runs that could not be carried out.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	if cfg.IDs == "" {
		cfg.IDs = IDsSequential
	}
	if cfg.clock == nil {
		cfg.clock = realClock{}
	}
	if cfg.Seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails
		cfg.Seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	base := strings.TrimRight(cfg.URL, "/")
	queryBase := base
	if cfg.QueryURL != "" {
		queryBase = strings.TrimRight(cfg.QueryURL, "/")
	}
	client := cfg.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = cfg.Concurrency + 2
		tr.DisableCompression = true
		client = &http.Client{Transport: tr}
		defer tr.CloseIdleConnections()
	}
	policy := retryPolicy{retries: cfg.Retries, base: cfg.BackoffBase}
	if policy.base == 0 {
		policy.base = 100 * time.Millisecond
	}
	stats := &statsReader{client: client, url: queryBase + "/stats", apiKey: cfg.APIKey, timeout: cfg.Timeout, policy: policy}

	rng := mrand.New(mrand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	plan := NewPlan(cfg.Events, DuplicateCount(cfg.Events, cfg.Duplicates), cfg.Batch, rng)
	rep := &Report{
		RunID: cfg.RunID, URL: base, Seed: cfg.Seed, Topics: cfg.Topics, Batch: cfg.Batch,
		Concurrency: cfg.Concurrency, Rate: cfg.Rate, OpenLoop: cfg.OpenLoop, IDs: cfg.IDs, NDJSON: cfg.NDJSON,
		EventsPlanned:     len(plan.Stream),
		DuplicatesInBatch: plan.InBatch, DuplicatesSoon: plan.Soon, DuplicatesLate: plan.Late,
	}

	var baseline Stats
	if cfg.Verify {
		var err error
		if baseline, err = stats.read(ctx); err != nil {
			return nil, fmt.Errorf("read baseline stats from %s: %w", stats.url, err)
		}
	}

	s := &sender{
		client: client, url: base + "/publish", apiKey: cfg.APIKey,
		timeout: cfg.Timeout, policy: policy, clock: cfg.clock,
	}
	enc := newEncoder(&cfg, time.Now())
	s.contentType = enc.ContentType()
	res := publish(ctx, &cfg, plan, s, enc)
	res.fill(rep, plan, cfg.Events)
	rep.Interrupted = ctx.Err() != nil

	switch {
	case !cfg.Verify:
	case rep.Interrupted:
		rep.Verification = &Verification{Status: VerifySkipped, Message: "interrupted", Baseline: baseline}
	default:
		v, err := verify(ctx, &cfg, stats, baseline, rep, res.topicsAcked(cfg.Topics))
		if err != nil {
			return rep, err
		}
		rep.Verification = v
	}
	return rep, nil
}

// verify waits for the counters to settle (or reads them once when the
// expectation is unknown) and judges them.
func verify(ctx context.Context, cfg *Config, stats *statsReader, baseline Stats, rep *Report, topics []string) (*Verification, error) {
	v := &Verification{
		Baseline:       baseline,
		ExpectedUnique: int64(rep.DistinctAcknowledged),
		MinReceived:    int64(rep.EventsAcknowledged),
	}
	if cfg.Notify != nil {
		cfg.Notify("waiting for the aggregator's counters to settle")
	}
	start := time.Now()
	var err error
	if rep.Unacknowledged > 0 {
		v.Final, err = stats.read(ctx)
	} else {
		quiet := cfg.SettleQuiet
		if quiet == 0 {
			quiet = 2 * time.Second
		}
		interval := cfg.PollInterval
		if interval == 0 {
			interval = 100 * time.Millisecond
		}
		v.Final, v.Settled, err = stats.settle(ctx, baseline, v.ExpectedUnique, v.MinReceived, cfg.SettleTimeout, quiet, interval)
	}
	v.SettleSeconds = time.Since(start).Seconds()
	if err != nil {
		return nil, fmt.Errorf("read stats from %s: %w", stats.url, err)
	}
	v.judge(rep.Unacknowledged, topics)
	return v, nil
}

// result is what the workers leave behind. acked and sent are indexed by
// request; each request is handled by exactly one worker.
type result struct {
	sent, acked []bool
	tally       *tally
	retries     int
	resent      int
	failures    int
	firstErr    error
	elapsed     time.Duration
	ackedEvent  []bool // by event number, set by fill
}

// publish sends every request of the plan with cfg.Concurrency workers.
func publish(ctx context.Context, cfg *Config, plan *Plan, s *sender, enc *encoder) *result {
	n := plan.Batches()
	res := &result{sent: make([]bool, n), acked: make([]bool, n), tally: newTally()}
	pace := newPacer(cfg.Rate, cfg.OpenLoop, cfg.clock)
	var (
		next    atomic.Int64
		mu      sync.Mutex
		wg      sync.WaitGroup
		errOnce sync.Once
	)
	start := cfg.clock.Now()
	for range min(cfg.Concurrency, n) {
		wg.Go(func() {
			t := newTally()
			var body []byte
			var retries, resent, failures int
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					break
				}
				events := plan.BatchAt(i)
				due, err := pace.wait(ctx, len(events))
				if err != nil {
					break
				}
				if !cfg.OpenLoop {
					due = time.Time{}
				}
				body = enc.AppendBody(body[:0], events)
				res.sent[i] = true
				attempts, err := s.send(ctx, body, t, due)
				retries += attempts - 1
				resent += (attempts - 1) * len(events)
				switch {
				case err == nil:
					res.acked[i] = true
				case ctx.Err() == nil:
					failures++
					errOnce.Do(func() { res.firstErr = err })
				}
				if cfg.Progress != nil {
					cfg.Progress(len(events))
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.tally.merge(t)
			res.retries += retries
			res.resent += resent
			res.failures += failures
		})
	}
	wg.Wait()
	res.elapsed = cfg.clock.Now().Sub(start)
	return res
}

// fill computes the report's counts from the per-request outcome.
func (res *result) fill(rep *Report, plan *Plan, distinct int) {
	seen := make([]bool, distinct)
	res.ackedEvent = make([]bool, distinct)
	for i := range res.sent {
		if !res.sent[i] {
			continue
		}
		for _, n := range plan.BatchAt(i) {
			rep.EventsSent++
			if !seen[n] {
				seen[n] = true
				rep.DistinctEvents++
			}
			if res.acked[i] {
				rep.EventsAcknowledged++
				if !res.ackedEvent[n] {
					res.ackedEvent[n] = true
					rep.DistinctAcknowledged++
				}
			}
		}
	}
	rep.DuplicatesSent = rep.EventsSent - rep.DistinctEvents
	rep.Unacknowledged = rep.DistinctEvents - rep.DistinctAcknowledged
	rep.Requests = res.tally.requests
	rep.Retries = res.retries
	rep.ResentEvents = res.resent
	rep.Failures = res.failures
	rep.Responses = res.tally.responses
	if res.firstErr != nil {
		rep.FirstError = res.firstErr.Error()
	}
	rep.ElapsedSeconds = res.elapsed.Seconds()
	if sec := res.elapsed.Seconds(); sec > 0 {
		rep.EventsPerSecond = float64(rep.EventsSent) / sec
		rep.RequestsPerSecond = float64(rep.Requests) / sec
	}
	rep.Latency = Summarize(res.tally.latencies)
}

// topicsAcked lists the topics that received at least one acknowledged event.
func (res *result) topicsAcked(topics int) []string {
	has := make([]bool, topics)
	for n, ok := range res.ackedEvent {
		if ok {
			has[n%topics] = true
		}
	}
	var out []string
	for i, ok := range has {
		if ok {
			out = append(out, TopicName(i))
		}
	}
	return out
}
