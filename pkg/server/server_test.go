package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServeHealthcheckShutdown: the healthcheck subcommand sees a live
// server, an in-flight request finishes during shutdown, and a stopped
// server fails the healthcheck.
func TestServeHealthcheckShutdown(t *testing.T) {
	release, entered := make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		_, _ = w.Write([]byte("done"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	served := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { served <- Serve(ctx, "127.0.0.1:0", mux, log, func(a net.Addr) { addrc <- a }) }()
	addr := (<-addrc).String()

	if err := Healthcheck(t.Context(), addr); err != nil {
		t.Fatalf("healthcheck of a live server: %v", err)
	}
	slow := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	<-entered
	cancel()
	time.Sleep(50 * time.Millisecond) // shutdown starts while the request is in flight
	close(release)
	if code := <-slow; code != http.StatusOK {
		t.Fatalf("in-flight request during shutdown: status %d, want 200", code)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := Healthcheck(t.Context(), addr); err == nil {
		t.Fatal("healthcheck of a stopped server succeeded")
	}
}

func TestHealthcheckAddressForms(t *testing.T) {
	if err := Healthcheck(t.Context(), "no-port"); err == nil {
		t.Fatal("an address without a port was accepted")
	}
}
