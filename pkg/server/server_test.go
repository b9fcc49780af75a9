package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// testServer runs Serve over a mux with /healthz and a /slow handler that
// waits for release.
type testServer struct {
	addr    string
	entered chan struct{} // a /slow request is in its handler
	release chan struct{} // lets /slow requests answer
	served  chan error
}

func startServer(t *testing.T, ctx context.Context, opts Options) *testServer {
	t.Helper()
	s := &testServer{entered: make(chan struct{}, 16), release: make(chan struct{}), served: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		s.entered <- struct{}{}
		select {
		case <-s.release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write([]byte("done"))
	})
	addrc := make(chan net.Addr, 1)
	opts.Ready = func(a net.Addr) { addrc <- a }
	log := slog.New(slog.DiscardHandler)
	go func() { s.served <- Serve(ctx, "127.0.0.1:0", mux, log, opts) }()
	select {
	case a := <-addrc:
		s.addr = a.String()
	case err := <-s.served:
		t.Fatalf("Serve: %v", err)
	}
	return s
}

// get runs GET path in the background and sends its status (0 on a
// transport error) on the returned channel.
func (s *testServer) get(path string) <-chan int {
	out := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + s.addr + path)
		if err != nil {
			out <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out <- resp.StatusCode
	}()
	return out
}

// waitRefused polls until a new connection to addr is refused: the
// listener is closed.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		conn.Close()
		select {
		case <-ctx.Done():
			t.Fatal("the server still accepts connections")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestServeHealthcheckShutdown: the healthcheck subcommand sees a live
// server, an in-flight request finishes after the server stopped accepting,
// and a stopped server fails the healthcheck.
func TestServeHealthcheckShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	s := startServer(t, ctx, Options{})
	if err := Healthcheck(t.Context(), s.addr); err != nil {
		t.Fatalf("healthcheck of a live server: %v", err)
	}
	slow := s.get("/slow")
	<-s.entered
	cancel()
	waitRefused(t, s.addr) // shutdown has begun while the request is in flight
	close(s.release)
	if code := <-slow; code != http.StatusOK {
		t.Fatalf("in-flight request during shutdown: status %d, want 200", code)
	}
	if err := <-s.served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := Healthcheck(t.Context(), s.addr); err == nil {
		t.Fatal("healthcheck of a stopped server succeeded")
	}
}

// TestServeDrainDelay: once ctx ends, Draining is called at once, and new
// requests are still served (on connections closed after them) until the
// delay is over; only then does the server stop accepting.
func TestServeDrainDelay(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	draining := make(chan struct{})
	delayed := make(chan time.Time)
	var asked time.Duration
	s := startServer(t, ctx, Options{
		Draining: func() { close(draining) },
		Delay:    5 * time.Second,
		after: func(d time.Duration) <-chan time.Time {
			asked = d
			return delayed
		},
	})
	cancel()
	<-draining
	for range 3 { // new connections during the delay are served
		resp, err := http.Get("http://" + s.addr + "/healthz")
		if err != nil {
			t.Fatalf("request during the delay: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !resp.Close {
			t.Fatalf("request during the delay: %d, close=%v; want 200 on a closed connection", resp.StatusCode, resp.Close)
		}
	}
	slow := s.get("/slow")
	<-s.entered
	close(delayed) // the delay is over
	waitRefused(t, s.addr)
	close(s.release)
	if code := <-slow; code != http.StatusOK {
		t.Fatalf("request in flight when the delay ended: %d", code)
	}
	if err := <-s.served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if asked != 5*time.Second {
		t.Fatalf("delay %v, want 5s", asked)
	}
}

// TestServeShutdownTimeout: a request that outlasts the timeout is cut and
// Serve says so rather than waiting for it.
func TestServeShutdownTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	s := startServer(t, ctx, Options{Timeout: 50 * time.Millisecond})
	slow := s.get("/slow")
	<-s.entered
	cancel()
	err := <-s.served
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Serve with a request stuck past the timeout: %v, want a deadline error", err)
	}
	if code := <-slow; code == http.StatusOK {
		t.Fatal("the stuck request was answered 200 after the timeout")
	}
}

func TestHealthcheckAddressForms(t *testing.T) {
	if err := Healthcheck(t.Context(), "no-port"); err == nil {
		t.Fatal("an address without a port was accepted")
	}
}
