// Package server runs a binary's HTTP server for its lifetime and answers the
// `healthcheck` subcommand of shell-less container images.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// DefaultShutdownTimeout bounds in-flight requests when Options leave it
// unset.
const DefaultShutdownTimeout = 20 * time.Second

// Options shape how a server stops.
type Options struct {
	// Draining, when not nil, is called as soon as ctx ends: it turns the
	// process's readiness false.
	Draining func()
	// Delay is how long the server keeps serving after that, for load
	// balancers and Kubernetes endpoints to stop routing to it; requests
	// arriving meanwhile are served, on connections closed after them.
	Delay time.Duration
	// Timeout bounds the in-flight requests once the server stops
	// accepting (default 20 s); those still running then are cut.
	Timeout time.Duration
	// Ready, when not nil, receives the bound address once the listener
	// is open (tests listen on port 0).
	Ready func(net.Addr)

	after func(time.Duration) <-chan time.Time // the delay's clock; tests replace it
}

// Serve listens on addr and serves h until ctx ends; then it drains as
// Options say and returns once no request is in flight.
func Serve(ctx context.Context, addr string, h http.Handler, log *slog.Logger, opts Options) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	var draining atomic.Bool
	srv := &http.Server{
		// While draining, each connection closes after its next response,
		// so the client reconnects through a load balancer that no longer
		// routes here. (Server.SetKeepAlivesEnabled would close the idle
		// ones at once instead, racing with requests just sent on them.)
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if draining.Load() {
				w.Header().Set("Connection", "close")
			}
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", "addr", ln.Addr().String())
	if opts.Ready != nil {
		opts.Ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if opts.Draining != nil {
		opts.Draining()
	}
	draining.Store(true)
	if opts.Delay > 0 {
		log.Info("draining: not ready, still serving", "delay", opts.Delay.String())
		after := opts.after
		if after == nil {
			after = time.After
		}
		select {
		case <-after(opts.Delay):
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	log.Info("shutting down: no new connections, finishing in-flight requests", "timeout", timeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Cut what is left: the process must exit within its grace period.
		_ = srv.Close()
		return fmt.Errorf("shutdown: requests still in flight after %v: %w", timeout, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Healthcheck asks the local server listening on addr for /healthz.
func Healthcheck(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: status %d", resp.StatusCode)
	}
	return nil
}
