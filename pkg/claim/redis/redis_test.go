package redis_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/event-aggregator/event-aggregator/pkg/claim/claimtest"
	claimredis "github.com/event-aggregator/event-aggregator/pkg/claim/redis"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

func TestMain(m *testing.M) {
	claimredis.SetLogger(slog.New(slog.DiscardHandler)) // dial errors are expected here
	os.Exit(m.Run())
}

func TestContract(t *testing.T) {
	client := newClient(t, testdeps.RedisURL(t))
	claimtest.Run(t, func(t *testing.T, owner string, cfg claimtest.Config) process.Claimer {
		// The suite's keys are unique per run, so claimers of one test share
		// state through the server and tests do not see each other's keys.
		return claimredis.New(client, owner, cfg.LeaseTTL, cfg.DedupWindow, claimredis.WithKeyPrefix("ea:claimtest:"))
	})
}

// TestWireFormat pins the keys and values other tools (and older workers) see.
func TestWireFormat(t *testing.T) {
	srv := startServer(t)
	client := newClient(t, srv.url())
	c := claimredis.New(client, "w-1", 30*time.Second, time.Hour)
	k := event.Key{Topic: "orders/eu", EventID: "e-1"}
	raw := "ea:claim:9:orders/eu/e-1"

	claimOne(t, c, k, process.Owned)
	checkRaw(t, client, raw, "lease:w-1", 30*time.Second)
	if err := c.MarkDone(t.Context(), []event.Key{k}, nil); err != nil {
		t.Fatal(err)
	}
	checkRaw(t, client, raw, "done", time.Hour)
	// A batch of a Kafka partition writes its range into the mark.
	at := &process.Offset{Topic: "events", Partition: 11, From: 40, Next: 52}
	if err := c.MarkDone(t.Context(), []event.Key{k}, at); err != nil {
		t.Fatal(err)
	}
	checkRaw(t, client, raw, "done:52:11:events", time.Hour)

	other := claimredis.New(client, "w-1", time.Second, time.Hour, claimredis.WithKeyPrefix("x:"))
	claimOne(t, other, k, process.Owned)
	checkRaw(t, client, "x:9:orders/eu/e-1", "lease:w-1", time.Second)
}

// Done marks as other versions, tools or a corruption may leave them: only
// a well-formed mark at or before the batch's start drops an event; anything
// else is left to the store, and nothing fails.
func TestDoneMarkValues(t *testing.T) {
	client := newClient(t, testdeps.RedisURL(t))
	prefix := "ea:claimtest:values:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	c := claimredis.New(client, "w-1", time.Minute, time.Minute, claimredis.WithKeyPrefix(prefix))
	at := &process.Offset{Topic: "events", Partition: 3, From: 100, Next: 120}
	for value, want := range map[string]process.Claim{
		"done":                   process.Leased, // no range: cannot be checked against the store
		"done:100:3:events":      process.Done,
		"done:99:3:events":       process.Done,
		"done:101:3:events":      process.Leased,
		"done:100:3:":            process.Leased,
		"done:100:3:events:more": process.Leased,
		"done:100:4:events":      process.Leased,
		"done:x:3:events":        process.Leased,
		"done:100:x:events":      process.Leased,
		"done:100":               process.Leased,
		"done:":                  process.Leased,
		"done:-5:3:events":       process.Done,
		"donex":                  process.Leased,
		"lease:w-2":              process.Leased,
		"":                       process.Leased,
	} {
		k := event.Key{Topic: "t", EventID: value}
		if err := client.Set(t.Context(), prefix+k.String(), value, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := c.Claim(t.Context(), []event.Key{k}, at)
		if err != nil || len(got) != 1 || got[0] != want {
			t.Errorf("a key holding %q: Claim = %v, %v; want %s", value, got, err, name(want))
		}
	}
}

func checkRaw(t *testing.T, client *goredis.Client, key, want string, ttl time.Duration) {
	t.Helper()
	got, err := client.Get(t.Context(), key).Result()
	if err != nil || got != want {
		t.Fatalf("GET %s = %q, %v; want %q", key, got, err, want)
	}
	pttl, err := client.PTTL(t.Context(), key).Result()
	if err != nil || pttl <= 0 || pttl > ttl {
		t.Fatalf("PTTL %s = %v, %v; want in (0, %v]", key, pttl, err, ttl)
	}
}

// A flushed Redis forgets leases and done marks: claims read Owned again and
// the store decides. Nothing fails.
func TestFlushAll(t *testing.T) {
	srv := startServer(t)
	client := newClient(t, srv.url())
	a := claimredis.New(client, "a", time.Minute, time.Hour)
	b := claimredis.New(client, "b", time.Minute, time.Hour)
	k := event.Key{Topic: "t", EventID: "e"}

	claimOne(t, a, k, process.Owned)
	flush(t, client)
	claimOne(t, b, k, process.Owned) // a's lease is gone: both go to the store
	if err := a.MarkDone(t.Context(), []event.Key{k}, nil); err != nil {
		t.Fatal(err)
	}
	claimOne(t, b, k, process.Done)

	flush(t, client)
	claimOne(t, b, k, process.Owned)
	if a.Degraded() || b.Degraded() {
		t.Fatal("a flush is not an outage")
	}
}

func flush(t *testing.T, client *goredis.Client) {
	t.Helper()
	if err := client.FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestOutage stops Redis under a claimer: calls fail fast and the claimer
// reports the outage once; when Redis is back the claimer recovers by itself.
// The clock is injected and the calls that reach Redis are counted, so no
// assertion depends on how fast the machine is.
func TestOutage(t *testing.T) {
	srv := startServer(t)
	client := newClient(t, srv.url())
	calls := countCalls(client)
	clk := &clock{t: time.Unix(1_000_000, 0)}
	var (
		mu      sync.Mutex
		changes []bool
	)
	c := claimredis.New(client, "a", time.Minute, time.Hour, claimredis.WithClock(clk.now),
		claimredis.WithDegradedHook(func(d bool) {
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, d)
		}))
	checkChanges := func(want ...bool) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(changes, want) {
			t.Fatalf("degraded changes = %v; want %v", changes, want)
		}
	}
	k := []event.Key{{Topic: "t", EventID: "e"}}
	// reaches tells whether f asked Redis.
	reaches := func(f func()) bool {
		before := calls.Load()
		f()
		return calls.Load() != before
	}

	claimOne(t, c, k[0], process.Owned)
	if err := c.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c.Degraded() {
		t.Fatal("Degraded with Redis up")
	}

	// A caller giving up is not an outage.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Claim(ctx, k, nil); err == nil {
		t.Fatal("Claim with a canceled context succeeded")
	}
	checkChanges()

	srv.stop()
	_, err := c.Claim(t.Context(), k, nil)
	if err == nil || errors.Is(err, claimredis.ErrUnavailable) {
		t.Fatalf("first Claim with Redis stopped: %v; want the connection error", err)
	}
	if !c.Degraded() {
		t.Fatalf("not Degraded after %v", err)
	}

	// Until the next probe is due, calls fail without asking Redis.
	for range 10 {
		if reaches(func() {
			if _, err := c.Claim(t.Context(), k, nil); !errors.Is(err, claimredis.ErrUnavailable) {
				t.Fatalf("Claim while degraded: %v; want ErrUnavailable", err)
			}
			if err := c.MarkDone(t.Context(), k, nil); !errors.Is(err, claimredis.ErrUnavailable) {
				t.Fatalf("MarkDone while degraded: %v; want ErrUnavailable", err)
			}
		}) {
			t.Fatal("a call while degraded asked Redis")
		}
	}
	// Ping always asks Redis; its failure restarts the probe interval.
	if !reaches(func() {
		if err := c.Ping(t.Context()); err == nil || errors.Is(err, claimredis.ErrUnavailable) {
			t.Fatalf("Ping with Redis stopped: %v; want the connection error", err)
		}
	}) {
		t.Fatal("Ping did not ask Redis")
	}
	clk.advance(claimredis.ProbeInterval - time.Nanosecond)
	if reaches(func() { _, _ = c.Claim(t.Context(), k, nil) }) {
		t.Fatal("a probe went through before the interval passed")
	}
	// Once the interval has passed, one call is the probe, and it fails.
	clk.advance(time.Nanosecond)
	if !reaches(func() {
		if _, err := c.Claim(t.Context(), k, nil); err == nil || errors.Is(err, claimredis.ErrUnavailable) {
			t.Fatalf("probe with Redis stopped: %v; want the connection error", err)
		}
	}) {
		t.Fatal("no probe once the interval passed")
	}
	if reaches(func() { _, _ = c.Claim(t.Context(), k, nil) }) {
		t.Fatal("a second probe in the same interval")
	}
	checkChanges(true)

	// Back up: the next probe succeeds. The server restarted empty, so the
	// lease is ours again.
	srv.start()
	clk.advance(claimredis.ProbeInterval)
	claimOne(t, c, k[0], process.Owned)
	if c.Degraded() {
		t.Fatal("still Degraded after a successful claim")
	}
	checkChanges(true, false)
}

// A hung server (here SIGSTOP) accepts connections but never answers: the
// client's read timeout, not the kernel, must end the call, and the next
// batches must not wait for it again.
func TestHungServerFailsFast(t *testing.T) {
	srv := startServer(t)
	client := newClient(t, srv.url())
	calls := countCalls(client)
	c := claimredis.New(client, "a", time.Minute, time.Hour)
	k := event.Key{Topic: "t", EventID: "e"}
	claimOne(t, c, k, process.Owned)

	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = srv.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	_, err := c.Claim(t.Context(), []event.Key{k}, nil)
	if netErr := net.Error(nil); !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("Claim against a hung server: %v; want the client's timeout", err)
	}
	if !c.Degraded() {
		t.Fatal("not Degraded")
	}
	before := calls.Load()
	if _, err := c.Claim(t.Context(), []event.Key{k}, nil); !errors.Is(err, claimredis.ErrUnavailable) {
		t.Fatalf("Claim after a timeout: %v; want ErrUnavailable", err)
	}
	if calls.Load() != before {
		t.Fatal("Claim after a timeout asked the hung server again")
	}

	// A successful Ping (a readiness probe) ends the degraded period.
	resume()
	waitFor(t, "Ping to succeed after the server resumed", func() bool { return c.Ping(t.Context()) == nil })
	claimOne(t, c, k, process.Owned)
	if c.Degraded() {
		t.Fatal("still Degraded")
	}
}

// An address that accepts no connection at all must not hold a batch either:
// the refused dial is the error, with no retry.
func TestUnreachableFailsFast(t *testing.T) {
	client := newClient(t, "redis://127.0.0.1:"+fmt.Sprint(freePort(t))+"/0")
	c := claimredis.New(client, "a", time.Minute, time.Hour)
	if _, err := c.Claim(t.Context(), []event.Key{{Topic: "t", EventID: "e"}}, nil); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Claim against a closed port: %v; want connection refused", err)
	}
	if !c.Degraded() {
		t.Fatal("not Degraded")
	}
}

// clock is a time source the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// callCounter counts the commands and pipelines a client sends (or tries to).
type callCounter struct{ n atomic.Int64 }

func countCalls(client *goredis.Client) *atomic.Int64 {
	h := &callCounter{}
	client.AddHook(h)
	return &h.n
}

func (h *callCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *callCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *callCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// waitFor polls cond until it holds; the bound only turns a hang into a
// failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewClient(t *testing.T) {
	client, err := claimredis.NewClient("redis://127.0.0.1:6379/2")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	o := client.Options()
	if o.DB != 2 || o.DialTimeout > time.Second || o.ReadTimeout > time.Second || o.WriteTimeout > time.Second ||
		o.PoolTimeout > time.Second || o.MaxRetries > 1 || o.DialerRetries != 1 {
		t.Fatalf("options not set to fail fast: db=%d dial=%v read=%v write=%v pool=%v retries=%d dial attempts=%d",
			o.DB, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout, o.MaxRetries, o.DialerRetries)
	}

	client, err = claimredis.NewClient("redis://127.0.0.1:6379/0?read_timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if got := client.Options().ReadTimeout; got != 2*time.Second {
		t.Fatalf("read_timeout from the URL = %v; want 2s", got)
	}

	if _, err := claimredis.NewClient("http://nope"); err == nil {
		t.Fatal("NewClient accepted an http URL")
	}
}

func claimOne(t *testing.T, c *claimredis.Claimer, k event.Key, want process.Claim) {
	t.Helper()
	got, err := c.Claim(t.Context(), []event.Key{k}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != want {
		t.Fatalf("claim %v = %s; want %s", k, name(got[0]), name(want))
	}
}

func newClient(t testing.TB, url string) *goredis.Client {
	t.Helper()
	client, err := claimredis.NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// server is a private redis-server the test may stop and restart without
// disturbing the shared one.
type server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
}

func startServer(t testing.TB) *server {
	t.Helper()
	s := &server{t: t, bin: testdeps.RedisServerBinary(t), dir: t.TempDir(), port: freePort(t)}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

func (s *server) start() {
	s.t.Helper()
	cmd := exec.Command(s.bin, "--port", fmt.Sprint(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd

	// Plain dials until it listens: a go-redis client would back off for a
	// second after repeated dial errors.
	addr := fmt.Sprintf("127.0.0.1:%d", s.port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s not listening: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	client := goredis.NewClient(&goredis.Options{Addr: addr})
	defer client.Close()
	if err := client.Ping(context.Background()).Err(); err != nil {
		s.t.Fatalf("redis-server on %s: %v", addr, err)
	}
}

func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func name(c process.Claim) string {
	if int(c) < 3 {
		return [...]string{"Owned", "Done", "Leased"}[c]
	}
	return fmt.Sprintf("Claim(%d)", c)
}
