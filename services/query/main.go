// Command query serves the stored events and the exact counters from
// Postgres: GET /events, /stats and /topics.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/api"
	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/config"
	"github.com/event-aggregator/event-aggregator/pkg/console"
	"github.com/event-aggregator/event-aggregator/pkg/health"
	"github.com/event-aggregator/event-aggregator/pkg/query"
	"github.com/event-aggregator/event-aggregator/pkg/server"
	"github.com/event-aggregator/event-aggregator/pkg/startup"
	"github.com/event-aggregator/event-aggregator/pkg/store/postgres"
	"github.com/event-aggregator/event-aggregator/pkg/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "query:", err)
		os.Exit(1)
	}
}

type cli struct {
	config.Query
	Serve       struct{} `cmd:"" default:"1" help:"Serve the read API (the default)."`
	Migrate     struct{} `cmd:"" help:"Apply the Postgres schema migrations and exit."`
	Healthcheck struct{} `cmd:"" help:"Ask the local server for /healthz and exit 0 when healthy (for container healthchecks)."`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c cli
	cmd, done, err := config.Parse(&c, args, "query",
		"Event Aggregator query: events and counters from Postgres.", config.QueryAddr, stdout, stderr)
	if err != nil || done {
		return err
	}
	switch cmd {
	case "healthcheck":
		return server.Healthcheck(ctx, c.Addr)
	case "migrate":
		return postgres.MigrateWhenReady(ctx, c.Postgres.URL, slog.New(slog.NewJSONHandler(stderr, nil)))
	}
	return serve(ctx, &c.Query, stderr)
}

// attemptTimeout bounds one attempt at reaching Postgres during start-up.
const attemptTimeout = 5 * time.Second

// serve listens at once and brings Postgres (and the schema) up in the
// background: until then /readyz says what it waits for.
func serve(ctx context.Context, cfg *config.Query, logw io.Writer) (err error) {
	started := time.Now()
	log, tracing, err := telemetry.Start(ctx, "query", logw, cfg.Log, cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tracing.Close()) }()

	opts := []postgres.Option{postgres.WithSession(postgres.Session{
		StatementTimeout:  cfg.PostgresStatementTimeout,
		LockTimeout:       cfg.PostgresLockTimeout,
		IdleInTransaction: cfg.PostgresIdleInTransactionTimeout,
	})}
	if tracing.Exporting { // the tracer costs even with a no-op provider
		opts = append(opts, postgres.WithTracerProvider(tracing.Provider))
	}
	// The pool connects on first use: a bad URL fails here, an unreachable
	// server is waited for below.
	store, err := postgres.Open(ctx, cfg.URL, cfg.MaxConns, opts...)
	if err != nil {
		return err
	}
	defer store.Close()
	deps := startup.New(log, startup.Backoff{})
	deps.Start(ctx, "postgres", startup.Bounded(attemptTimeout, store.Ping))
	checks := map[string]health.Check{"postgres": deps.CheckThen("postgres", store.Ping)}
	if cfg.MigrateOnStart {
		deps.Start(ctx, "migrations", func(ctx context.Context) error {
			deps.Note("migrations", "migrating (waits while another process holds the migration lock)")
			return store.Migrate(ctx)
		}, "postgres")
		checks["migrations"] = deps.Check("migrations")
	}
	var drain health.Drain
	checks["shutdown"] = drain.Check
	metrics := telemetry.NewMetrics()
	keys, err := auth.Open(ctx, cfg.APIKeys, cfg.APIKeysFile, log)
	if err != nil {
		return err
	}
	policy := cfg.Policy()
	h := api.Handler(api.Routes{
		Query: query.New(store, started, log,
			query.WithRetention(policy), query.WithSize(store.Size)),
		Ready:   health.Ready(2*time.Second, checks),
		Metrics: metrics.Handler(),
		Keys:    keys,
		// Postgres' unique key judges duplicates for as long as rows are
		// kept; Redis only remembers recent keys to spare it work.
		Console: console.New(console.Options{Mode: console.Distributed, Engine: "postgres", Store: store,
			Retention: policy.Default, RetentionTopics: policy.Topics, DedupWindow: policy.DedupWindow,
			WorkerMetrics: cfg.WorkerMetricsURLs, Log: log}),
		Wrap: telemetry.HTTPMiddleware(metrics, tracing.Provider, tracing.Propagator),
	})
	err = server.Serve(ctx, cfg.Addr, h, log, server.Options{
		Draining: drain.Begin,
		Delay:    cfg.ShutdownDelay,
		Timeout:  cfg.ShutdownTimeout,
	})
	log.Info("stopped", "uptime", time.Since(started).String())
	return err
}
