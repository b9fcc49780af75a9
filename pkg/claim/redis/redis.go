// Package redis is the Claimer of the distributed mode: the lease protocol of
// docs/architecture.md ("Claims") on Redis, one pipelined round trip per batch.
//
// A key holds "lease:<owner>" while a worker processes the event and
// "done:<next>:<partition>:<topic>" (the Kafka range of the batch that stored
// it; plain "done" without one) for the dedup window after the store
// committed it. A mark that process.TrustDone rejects is not a verdict. Redis is a shortcut, not
// the judge: when it is unreachable or was flushed, Claim fails or answers
// Owned, and the store alone decides.
package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// DefaultKeyPrefix is prepended to every claim key.
const DefaultKeyPrefix = "ea:claim:"

// ProbeInterval is how often a degraded Claimer lets a call through to Redis
// to learn whether it is back.
const ProbeInterval = time.Second

// ErrUnavailable is returned, without asking Redis, by calls made while the
// Claimer is degraded and no probe is due: a hung Redis would otherwise cost
// every batch a full read timeout.
var ErrUnavailable = errors.New("redis unavailable")

const (
	leasePrefix = "lease:"
	doneValue   = "done"
)

// Claimer holds leases and done marks in Redis for one owner.
type Claimer struct {
	client      redis.UniversalClient
	prefix      string
	lease       string // this owner's lease value
	leaseTTL    time.Duration
	dedupWindow time.Duration
	onChange    func(degraded bool)
	now         func() time.Time // time.Now; tests inject a clock

	degraded  atomic.Bool
	nextProbe atomic.Int64 // unix ns; while degraded, calls before it fail at once
	mu        sync.Mutex   // serializes state changes so onChange sees them in order
	lastErr   error        // guarded by mu
}

// Option configures a Claimer.
type Option func(*Claimer)

// WithKeyPrefix replaces DefaultKeyPrefix.
func WithKeyPrefix(prefix string) Option {
	return func(c *Claimer) { c.prefix = prefix }
}

// WithDegradedHook calls f once per change of Degraded (not once per failed
// batch), so logs and metrics report an outage without flooding.
func WithDegradedHook(f func(degraded bool)) Option {
	return func(c *Claimer) { c.onChange = f }
}

// New returns a Claimer for owner. The client's timeouts bound how long a call
// waits for an unreachable Redis: use NewClient, or set them short yourself.
func New(client redis.UniversalClient, owner string, leaseTTL, dedupWindow time.Duration, opts ...Option) *Claimer {
	c := &Claimer{
		client:      client,
		prefix:      DefaultKeyPrefix,
		lease:       leasePrefix + owner,
		leaseTTL:    leaseTTL,
		dedupWindow: dedupWindow,
		now:         time.Now,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Client timeouts of NewClient: a worker waiting on a dead Redis stalls its
// partition, so a call gives up within about a second and the store decides.
// A stopped Redis refuses connections at once; only a hung one waits out
// ioTimeout, which is a second because a loaded 2-core machine answering
// several 1,000-key pipelines at once overran 500 ms.
const (
	dialTimeout  = 250 * time.Millisecond
	ioTimeout    = time.Second
	poolTimeout  = 500 * time.Millisecond
	maxRetries   = -1 // a failed claim costs speed only; a retry doubles the wait on a hung server
	dialAttempts = 1
)

// NewClient parses a redis:// or rediss:// URL and returns a client that fails
// fast when Redis is unreachable. Timeouts given in the URL's query are kept.
func NewClient(url string, opts ...ClientOption) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	var co clientOptions
	for _, o := range opts {
		o(&co)
	}
	if err := applyTLS(opt, co); err != nil {
		return nil, err
	}
	// No CLIENT SETINFO on connect: Redis before 7.2 answers it with an
	// error on every new connection.
	opt.DisableIdentity = true
	if opt.DialTimeout == 0 {
		opt.DialTimeout = dialTimeout
		if opt.TLSConfig != nil {
			opt.DialTimeout = tlsDialTimeout
		}
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = ioTimeout
	}
	if opt.WriteTimeout == 0 {
		opt.WriteTimeout = ioTimeout
	}
	if opt.PoolTimeout == 0 {
		opt.PoolTimeout = poolTimeout
	}
	if opt.MaxRetries == 0 {
		opt.MaxRetries = maxRetries
	}
	if opt.DialerRetries == 0 {
		// The default (5 attempts, 100 ms apart) would hold a batch for
		// seconds against an address that does not answer.
		opt.DialerRetries = dialAttempts
	}
	opt.ContextTimeoutEnabled = true
	return redis.NewClient(opt), nil
}

// Claim leases each key with SET NX GET: a key that was free is Owned, one
// marked done by a batch the store still holds (process.TrustDone) is Done,
// our own lease (a retried batch) is Owned, and anything else is Leased,
// which the store then decides.
func (c *Claimer) Claim(ctx context.Context, keys []event.Key, at *process.Offset) ([]process.Claim, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	if err := c.admit(); err != nil {
		return nil, err
	}
	pipe := c.client.Pipeline()
	cmds := make([]*redis.StatusCmd, len(keys))
	args := redis.SetArgs{Mode: "NX", TTL: c.leaseTTL, Get: true}
	for i, k := range keys {
		cmds[i] = pipe.SetArgs(ctx, c.key(k), c.lease, args)
	}
	// Exec reports redis.Nil for every key that was free; each command's
	// own error is what counts.
	_, _ = pipe.Exec(ctx)

	out := make([]process.Claim, len(keys))
	for i, cmd := range cmds {
		prev, err := cmd.Result()
		switch {
		case errors.Is(err, redis.Nil):
			out[i] = process.Owned
		case err != nil:
			return nil, c.observe(ctx, fmt.Errorf("redis claim: %w", err))
		case prev == c.lease:
			out[i] = process.Owned
		case trustedDone(prev, at):
			out[i] = process.Done
		default:
			out[i] = process.Leased
		}
	}
	c.observe(ctx, nil)
	return out, nil
}

// MarkDone marks keys done for the dedup window, replacing their leases,
// with the Kafka range at of the batch that stored them.
func (c *Claimer) MarkDone(ctx context.Context, keys []event.Key, at *process.Offset) error {
	if len(keys) == 0 {
		return nil
	}
	if err := c.admit(); err != nil {
		return err
	}
	pipe := c.client.Pipeline()
	args := redis.SetArgs{TTL: c.dedupWindow}
	value := doneAt(at)
	for _, k := range keys {
		pipe.SetArgs(ctx, c.key(k), value, args)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return c.observe(ctx, fmt.Errorf("redis mark done: %w", err))
	}
	c.observe(ctx, nil)
	return nil
}

// Ping checks that Redis answers (for readiness probes). It always asks
// Redis, so it also ends a degraded period as soon as Redis is back.
func (c *Claimer) Ping(ctx context.Context) error {
	if err := c.client.Ping(ctx).Err(); err != nil {
		return c.observe(ctx, fmt.Errorf("redis ping: %w", err))
	}
	c.observe(ctx, nil)
	return nil
}

// Degraded reports whether the last call to Redis failed. It turns false
// again on the next call that succeeds (a probe or Ping): go-redis
// reconnects by itself.
func (c *Claimer) Degraded() bool { return c.degraded.Load() }

// admit lets a call through to Redis unless the Claimer is degraded and
// another probe was made less than ProbeInterval ago.
func (c *Claimer) admit() error {
	if !c.degraded.Load() {
		return nil
	}
	now := c.now().UnixNano()
	next := c.nextProbe.Load()
	if now >= next && c.nextProbe.CompareAndSwap(next, now+int64(ProbeInterval)) {
		return nil // this call is the probe
	}
	c.mu.Lock()
	last := c.lastErr
	c.mu.Unlock()
	return fmt.Errorf("%w (last error: %v)", ErrUnavailable, last)
}

func (c *Claimer) key(k event.Key) string { return c.prefix + k.String() }

// doneAt is the value of a done mark written by the batch that consumed at.
// The topic goes last: Kafka topic names hold no ':', but it keeps the
// parse trivial whatever they hold.
func doneAt(at *process.Offset) string {
	if at == nil {
		return doneValue
	}
	return doneValue + ":" + strconv.FormatInt(at.Next, 10) + ":" + strconv.Itoa(at.Partition) + ":" + at.Topic
}

// trustedDone reports whether v is a done mark that may drop an event of
// the batch consuming at.
func trustedDone(v string, at *process.Offset) bool {
	mark, ok := parseDone(v)
	return ok && process.TrustDone(mark, at)
}

// parseDone reads a done mark; mark is nil for one without a range. ok is
// false for anything else (a lease, a value this version does not know).
func parseDone(v string) (mark *process.Offset, ok bool) {
	if v == doneValue {
		return nil, true
	}
	rest, found := strings.CutPrefix(v, doneValue+":")
	if !found {
		return nil, false
	}
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 {
		return nil, false
	}
	next, err1 := strconv.ParseInt(parts[0], 10, 64)
	partition, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return nil, false
	}
	return &process.Offset{Topic: parts[2], Partition: partition, Next: next}, true
}

// observe records the outcome of a call and returns err.
func (c *Claimer) observe(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		// The caller gave up (shutdown, deadline): that says nothing about
		// Redis.
		return err
	}
	degraded := err != nil
	if !degraded && !c.degraded.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if degraded {
		c.lastErr = err
		c.nextProbe.Store(c.now().Add(ProbeInterval).UnixNano())
	}
	if c.degraded.Load() != degraded {
		c.degraded.Store(degraded)
		if c.onChange != nil {
			c.onChange(degraded)
		}
	}
	return err
}
