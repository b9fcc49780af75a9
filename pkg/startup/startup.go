// Package startup brings a process's dependencies up in the background while
// its HTTP server already answers: each dependency is retried with capped,
// jittered backoff and reported as a readiness check until it is up. A
// process therefore never exits, nor stays silent, because Kafka, Postgres or
// Redis started after it.
package startup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/event-aggregator/event-aggregator/pkg/problem"
)

// Default backoff between the attempts of one dependency.
const (
	DefaultInitial = 200 * time.Millisecond
	DefaultMax     = 5 * time.Second
)

// Backoff bounds the waits between attempts: from Initial, growing to at
// most Max, each randomised by ±50% so that replicas started together do
// not knock on a recovering server in step.
type Backoff struct {
	Initial, Max time.Duration
}

func (b Backoff) exponential() *backoff.ExponentialBackOff {
	e := backoff.NewExponentialBackOff()
	e.InitialInterval = b.Initial
	if e.InitialInterval <= 0 {
		e.InitialInterval = DefaultInitial
	}
	e.MaxInterval = max(b.Max, e.InitialInterval)
	if b.Max <= 0 {
		e.MaxInterval = max(DefaultMax, e.InitialInterval)
	}
	e.RandomizationFactor = 0.5
	e.Multiplier = 2
	return e
}

// Retry runs up until it returns nil or ctx ends. It logs once when the
// first attempt fails and once when the dependency is up after waiting, so a
// long outage is two lines, not one per attempt; each retry is at debug.
func Retry(ctx context.Context, log *slog.Logger, name string, b Backoff, up func(context.Context) error) error {
	return retry(ctx, log, name, b, up, func(error) {})
}

func retry(ctx context.Context, log *slog.Logger, name string, b Backoff, up func(context.Context) error, failed func(error)) error {
	started := time.Now()
	attempts := 0
	var last error
	logged := ""
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempts++
		err := up(ctx)
		if err != nil && ctx.Err() == nil {
			last = err
			failed(err)
			// Each distinct error once: a wrong password is one line, and
			// an operator who fixes one cause sees the next.
			if msg := err.Error(); msg != logged {
				logged = msg
				log.WarnContext(ctx, "waiting for "+name, "err", err)
			} else {
				log.DebugContext(ctx, "still waiting for "+name, "err", err, "attempt", attempts)
			}
		}
		return struct{}{}, err
	}, backoff.WithBackOff(b.exponential()), backoff.WithMaxElapsedTime(0))
	if err != nil {
		if last != nil && !errors.Is(err, last) {
			return fmt.Errorf("waiting for %s: %w (last: %w)", name, err, last)
		}
		return fmt.Errorf("waiting for %s: %w", name, err)
	}
	if attempts > 1 {
		log.InfoContext(ctx, name+" ready", "waited", time.Since(started).Round(time.Millisecond).String(),
			"attempts", attempts)
	} else {
		log.InfoContext(ctx, name+" ready")
	}
	return nil
}

// Deps is the set of dependencies a process brings up in the background.
type Deps struct {
	log     *slog.Logger
	backoff Backoff

	mu    sync.Mutex
	deps  map[string]*dep
	order []string
}

type dep struct {
	up    chan struct{} // closed once the dependency is up
	state string        // why it is not up yet
}

// New returns an empty set; b tunes the retries (zero values take the
// defaults).
func New(log *slog.Logger, b Backoff) *Deps {
	return &Deps{log: log, backoff: b, deps: map[string]*dep{}}
}

// Start brings name up in the background: once every dependency named in
// after is up, it runs up until it returns nil, retrying with backoff, or
// ctx ends. up gets ctx for every attempt; bound an attempt inside up when
// the client it calls does not. Names are unique; after names must have been
// started before.
func (d *Deps) Start(ctx context.Context, name string, up func(context.Context) error, after ...string) {
	d.mu.Lock()
	if _, dup := d.deps[name]; dup {
		d.mu.Unlock()
		panic("startup: dependency " + name + " started twice")
	}
	self := &dep{up: make(chan struct{}), state: "starting"}
	var before []*dep
	for _, a := range after {
		p, ok := d.deps[a]
		if !ok {
			d.mu.Unlock()
			panic("startup: " + name + " comes after " + a + ", which was never started")
		}
		before = append(before, p)
	}
	if len(after) > 0 {
		self.state = "waiting for " + strings.Join(after, ", ")
	}
	d.deps[name] = self
	d.order = append(d.order, name)
	d.mu.Unlock()

	go func() {
		for _, p := range before {
			select {
			case <-p.up:
			case <-ctx.Done():
				d.set(self, "stopped before it was up")
				return
			}
		}
		d.set(self, "starting")
		err := retry(ctx, d.log, name, d.backoff, up, func(err error) { d.set(self, err.Error()) })
		if err != nil {
			d.set(self, "stopped before it was up")
			return
		}
		d.set(self, "")
		close(self.up)
	}()
}

func (d *Deps) set(p *dep, state string) {
	d.mu.Lock()
	p.state = state
	d.mu.Unlock()
}

// Check returns the readiness check of name: nil once it is up, else why
// not (the last error of its attempts).
func (d *Deps) Check(name string) func(context.Context) error {
	return func(context.Context) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		p, ok := d.deps[name]
		switch {
		case !ok:
			return fmt.Errorf("%s was never started", name)
		case p.state != "":
			return errors.New(p.state)
		}
		return nil
	}
}

// Checks returns the readiness check of every dependency started so far, by
// name.
func (d *Deps) Checks() map[string]func(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]func(context.Context) error, len(d.order))
	for _, name := range d.order {
		out[name] = d.Check(name)
	}
	return out
}

// Wait returns nil once every named dependency is up (all of them when none
// is named), or ctx's error.
func (d *Deps) Wait(ctx context.Context, names ...string) error {
	d.mu.Lock()
	if len(names) == 0 {
		names = slices.Clone(d.order)
	}
	var ups []chan struct{}
	for _, n := range names {
		p, ok := d.deps[n]
		if !ok {
			d.mu.Unlock()
			return fmt.Errorf("%s was never started", n)
		}
		ups = append(ups, p.up)
	}
	d.mu.Unlock()
	for _, up := range ups {
		select {
		case <-up:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Pending lists the dependencies not up yet with why, in start order.
func (d *Deps) Pending() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, name := range d.order {
		if s := d.deps[name].state; s != "" {
			out = append(out, name+": "+s)
		}
	}
	return out
}

// Require answers 503 (problem+json, Retry-After) instead of calling h while
// any named dependency is down, so a request is refused at once and cleanly
// rather than held until its own timeout.
func (d *Deps) Require(h http.Handler, names ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var waiting []string
		for _, n := range names {
			if err := d.Check(n)(r.Context()); err != nil {
				waiting = append(waiting, n+": "+err.Error())
			}
		}
		if len(waiting) > 0 {
			w.Header().Set("Retry-After", "1")
			problem.Write(w, http.StatusServiceUnavailable, "not ready: "+strings.Join(waiting, "; "), nil)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Note sets what name is doing while an attempt runs, for /readyz: a long
// wait that is not a failure, such as another process's migration lock.
// The next failed attempt replaces it with its error.
func (d *Deps) Note(name, state string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if p, ok := d.deps[name]; ok && p.state != "" {
		p.state = state
	}
}

// CheckThen is name's readiness check until it is up, then live: a
// dependency reports why it is not up yet, then whether it still answers.
func (d *Deps) CheckThen(name string, live func(context.Context) error) func(context.Context) error {
	first := d.Check(name)
	return func(ctx context.Context) error {
		if err := first(ctx); err != nil {
			return err
		}
		return live(ctx)
	}
}

// Bounded gives each attempt of up at most timeout, for clients whose dial
// to an address that drops packets would otherwise wait for the kernel's
// TCP timeout.
func Bounded(timeout time.Duration, up func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return up(ctx)
	}
}
