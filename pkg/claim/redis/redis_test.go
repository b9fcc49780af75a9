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
func TestOutage(t *testing.T) {
	srv := startServer(t)
	client := newClient(t, srv.url())
	var (
		mu      sync.Mutex
		changes []bool
	)
	c := claimredis.New(client, "a", time.Minute, time.Hour, claimredis.WithDegradedHook(func(d bool) {
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
	start := time.Now()
	_, err := c.Claim(t.Context(), k, nil)
	if err == nil || errors.Is(err, claimredis.ErrUnavailable) {
		t.Fatalf("first Claim with Redis stopped: %v; want the connection error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Claim with Redis stopped took %v; want < 2s", d)
	}
	if !c.Degraded() {
		t.Fatalf("not Degraded after %v", err)
	}
	failedAt := time.Now()

	// Until the next probe is due, calls fail without asking Redis.
	for range 10 {
		start := time.Now()
		if _, err := c.Claim(t.Context(), k, nil); !errors.Is(err, claimredis.ErrUnavailable) {
			t.Fatalf("Claim while degraded: %v; want ErrUnavailable", err)
		}
		if err := c.MarkDone(t.Context(), k, nil); !errors.Is(err, claimredis.ErrUnavailable) {
			t.Fatalf("MarkDone while degraded: %v; want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("calls while degraded took %v", d)
		}
	}
	// Ping always asks Redis.
	if err := c.Ping(t.Context()); err == nil || errors.Is(err, claimredis.ErrUnavailable) {
		t.Fatalf("Ping with Redis stopped: %v; want the connection error", err)
	}
	// A probe goes through once the interval has passed, and fails.
	for {
		_, err := c.Claim(t.Context(), k, nil)
		if !errors.Is(err, claimredis.ErrUnavailable) {
			if err == nil {
				t.Fatal("probe with Redis stopped succeeded")
			}
			break
		}
		if time.Since(failedAt) > claimredis.DefaultProbeInterval+5*time.Second {
			t.Fatal("no probe within the probe interval")
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkChanges(true)

	srv.start()
	start = time.Now()
	for {
		got, err := c.Claim(t.Context(), k, nil)
		if err == nil {
			// The server restarted empty: the lease is ours again.
			if got[0] != process.Owned {
				t.Fatalf("claim after restart = %s; want Owned", name(got[0]))
			}
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("Claim still failing 10s after Redis restarted: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("recovered %v after Redis restarted", time.Since(start).Round(time.Millisecond))
	if c.Degraded() {
		t.Fatal("still Degraded after a successful claim")
	}
	checkChanges(true, false)
}

// A hung server (here SIGSTOP) accepts connections but never answers: the
// read timeout, not the kernel, must end the call.
func TestHungServerFailsFast(t *testing.T) {
	srv := startServer(t)
	client := newClient(t, srv.url())
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
	start := time.Now()
	if _, err := c.Claim(t.Context(), []event.Key{k}, nil); err == nil {
		t.Fatal("Claim against a hung server succeeded")
	}
	d := time.Since(start)
	if d > 2*time.Second {
		t.Fatalf("Claim against a hung server took %v; want < 2s", d)
	}
	t.Logf("Claim against a hung server failed after %v", d.Round(time.Millisecond))
	if !c.Degraded() {
		t.Fatal("not Degraded")
	}
	// The next batches do not wait for the hung server again.
	start = time.Now()
	if _, err := c.Claim(t.Context(), []event.Key{k}, nil); !errors.Is(err, claimredis.ErrUnavailable) {
		t.Fatalf("Claim after a timeout: %v; want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Claim after a timeout took %v", d)
	}

	// A successful Ping (a readiness probe) ends the degraded period.
	resume()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Ping(t.Context())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ping still failing 10s after the server resumed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	claimOne(t, c, k, process.Owned)
	if c.Degraded() {
		t.Fatal("still Degraded")
	}
}

// An address that accepts no connection at all must not hold a batch either.
func TestUnreachableFailsFast(t *testing.T) {
	client := newClient(t, "redis://127.0.0.1:"+fmt.Sprint(freePort(t))+"/0")
	c := claimredis.New(client, "a", time.Minute, time.Hour)
	start := time.Now()
	if _, err := c.Claim(t.Context(), []event.Key{{Topic: "t", EventID: "e"}}, nil); err == nil {
		t.Fatal("Claim against a closed port succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Claim against a closed port took %v", d)
	}
	if !c.Degraded() {
		t.Fatal("not Degraded")
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
