// Package loadgen publishes generated events to an aggregator with at-least-once
// delivery (planned re-sends plus retries) and verifies the aggregator's counters.
package loadgen

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Config is everything one run needs. The zero values of the optional fields are usable.
type Config struct {
	URL      string // ingest base URL; /publish is appended
	QueryURL string // where /stats is read; empty means URL

	Events      int     // distinct events
	Topics      int     // events are spread over topic-0 … topic-(Topics-1)
	Duplicates  float64 // fraction of all sent events that are re-sends, in [0, 1)
	Batch       int     // events per request; 1 sends single-object bodies
	Concurrency int
	Rate        float64 // target events/s; 0 means unlimited
	Retries     int     // extra attempts per request
	Timeout     time.Duration
	RunID       string // sequential event ids are <RunID>-<n>
	IDs         string // IDsSequential (also "") or IDsUUID
	// OpenLoop (with Rate) schedules request i at start + i·batch/Rate whatever
	// the answers, and counts each first attempt's latency from that scheduled
	// time, so time spent waiting for a free client is counted too.
	OpenLoop     bool
	PayloadBytes int
	APIKey       string
	NDJSON       bool
	Source       string // the events' "source"; empty means "publisher"
	Seed         uint64 // plan and shuffle seed; 0 picks one at random

	Verify        bool
	SettleTimeout time.Duration // upper bound for waiting on /stats after sending
	SettleQuiet   time.Duration // counters unchanged this long count as settled
	PollInterval  time.Duration // /stats polling period; 0 means 100ms

	// BackoffBase is the first retry delay before jitter; 0 means 100ms.
	BackoffBase time.Duration
	// Progress, when set, is called with the number of events of each finished
	// request. It is called from several goroutines.
	Progress func(events int)
	// Notify, when set, is told when a phase starts (for an interactive display).
	Notify func(msg string)
	// Client overrides the HTTP client (tests); nil builds one sized for Concurrency.
	Client *http.Client
	// clock overrides the time source of sending (tests); nil is the real one.
	clock clock
}

// maxRunID leaves room for "-<n>" inside the 255-byte event_id limit.
const maxRunID = 200

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	var errs []error
	for _, u := range []struct{ name, v string }{{"url", c.URL}, {"query-url", c.QueryURL}} {
		if u.v == "" && u.name == "query-url" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Errorf("%s %q: want an http(s) URL with a host", u.name, u.v))
		}
	}
	if c.Events < 1 || c.Events > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("events %d: want 1..%d", c.Events, math.MaxInt32))
	}
	if c.Topics < 1 {
		errs = append(errs, fmt.Errorf("topics %d: want at least 1", c.Topics))
	}
	if math.IsNaN(c.Duplicates) || c.Duplicates < 0 || c.Duplicates > 0.99 {
		errs = append(errs, fmt.Errorf("duplicates %v: want a ratio in [0, 0.99]", c.Duplicates))
	}
	if c.Batch < 1 {
		errs = append(errs, fmt.Errorf("batch %d: want at least 1", c.Batch))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: want at least 1", c.Concurrency))
	}
	if math.IsNaN(c.Rate) || c.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate %v: want 0 (unlimited) or more", c.Rate))
	}
	if c.OpenLoop && c.Rate <= 0 {
		errs = append(errs, errors.New("open loop needs a rate: requests are scheduled at --rate"))
	}
	if err := checkIDs(c.IDs); err != nil {
		errs = append(errs, err)
	}
	if c.Retries < 0 {
		errs = append(errs, fmt.Errorf("retries %d: want 0 or more", c.Retries))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("timeout %v: want a positive duration", c.Timeout))
	}
	if c.PayloadBytes < 0 {
		errs = append(errs, fmt.Errorf("payload-bytes %d: want 0 or more", c.PayloadBytes))
	}
	if err := checkName("run-id", c.RunID, maxRunID); err != nil {
		errs = append(errs, err)
	}
	if c.Source != "" {
		if err := checkName("source", c.Source, 255); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Verify && c.SettleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("settle-timeout %v: want a positive duration", c.SettleTimeout))
	}
	if c.SettleQuiet < 0 || c.PollInterval < 0 || c.BackoffBase < 0 {
		errs = append(errs, errors.New("settle-quiet, poll interval and backoff must not be negative"))
	}
	return errors.Join(errs...)
}

// checkName applies the aggregator's rules for identifiers (docs/architecture.md, "HTTP contract").
func checkName(field, s string, limit int) error {
	switch {
	case s == "":
		return fmt.Errorf("%s: must not be empty", field)
	case len(s) > limit:
		return fmt.Errorf("%s: longer than %d bytes", field, limit)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s: not valid UTF-8", field)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%s: contains control characters", field)
	}
	return nil
}

// DuplicateCount is the number of re-sends for distinct events and ratio r,
// chosen so that re-sends make up r of everything sent: d / (distinct + d) ≈ r.
func DuplicateCount(distinct int, r float64) int {
	if r <= 0 {
		return 0
	}
	return int(math.Round(float64(distinct) * r / (1 - r)))
}
