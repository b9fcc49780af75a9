package postgres_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/store/postgres"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// lockedBuffer collects log output written from other goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMigrateWhenReadyWaitsForPostgres: the migrate subcommand started
// while Postgres refuses connections logs the wait once, then migrates as
// soon as the server answers.
func TestMigrateWhenReadyWaitsForPostgres(t *testing.T) {
	url := testdeps.NewPostgresDB(t)
	proxy := testdeps.NewProxy(t, hostPort(t, url))
	var logs lockedBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	done := make(chan error, 1)
	go func() { done <- postgres.MigrateWhenReady(t.Context(), proxy.URL(t, url), log) }()

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for !strings.Contains(logs.String(), `"msg":"waiting for postgres"`) {
		select {
		case err := <-done:
			t.Fatalf("MigrateWhenReady returned while Postgres was down: %v", err)
		case <-ctx.Done():
			t.Fatal("no 'waiting for postgres' line while Postgres was down")
		case <-time.After(10 * time.Millisecond):
		}
	}
	proxy.Up(t)
	if err := <-done; err != nil {
		t.Fatalf("MigrateWhenReady: %v\n%s", err, logs.String())
	}
	out := logs.String()
	for msg, want := range map[string]int{"waiting for postgres": 1, "postgres ready": 1, "migrations applied": 1} {
		if n := strings.Count(out, `"msg":"`+msg+`"`); n != want {
			t.Errorf("%d %q lines, want %d:\n%s", n, msg, want, out)
		}
	}
	s, err := postgres.Open(t.Context(), url, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ID(t.Context()); err != nil {
		t.Fatalf("the schema is not there: %v", err)
	}
}

func hostPort(t *testing.T, url string) string {
	t.Helper()
	_, rest, ok := strings.Cut(url, "@")
	if !ok {
		t.Fatalf("no host in %s", url)
	}
	host, _, _ := strings.Cut(rest, "/")
	return host
}
