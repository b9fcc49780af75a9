// Command aggregator is the all-in-one Event Aggregator: the publish handler,
// the processing core and the read handlers in one process over an embedded
// store (Pebble or SQLite).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/api"
	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/bus/local"
	"github.com/event-aggregator/event-aggregator/pkg/claim/memory"
	"github.com/event-aggregator/event-aggregator/pkg/config"
	"github.com/event-aggregator/event-aggregator/pkg/console"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/health"
	"github.com/event-aggregator/event-aggregator/pkg/ingest"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/query"
	"github.com/event-aggregator/event-aggregator/pkg/retention"
	"github.com/event-aggregator/event-aggregator/pkg/server"
	"github.com/event-aggregator/event-aggregator/pkg/store/pebble"
	"github.com/event-aggregator/event-aggregator/pkg/store/sqlite"
	"github.com/event-aggregator/event-aggregator/pkg/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "aggregator:", err)
		os.Exit(1)
	}
}

type cli struct {
	config.Aggregator
	Serve       struct{} `cmd:"" default:"1" help:"Serve the API (the default)."`
	Healthcheck struct{} `cmd:"" help:"Ask the local server for /healthz and exit 0 when healthy (for container healthchecks)."`
}

// run parses args, then serves until ctx ends. ready, when not nil, gets the
// bound address (tests listen on port 0).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(net.Addr)) error {
	var c cli
	cmd, done, err := config.Parse(&c, args, "aggregator",
		"All-in-one Event Aggregator: publish, dedup and query events in one process over an embedded store.",
		config.AggregatorAddr, stdout, stderr)
	if err != nil || done {
		return err
	}
	if cmd == "healthcheck" {
		return server.Healthcheck(ctx, c.Addr)
	}
	return serve(ctx, &c.Aggregator, stderr, ready)
}

func serve(ctx context.Context, cfg *config.Aggregator, logw io.Writer, ready func(net.Addr)) (err error) {
	started := time.Now()
	engine, err := storeEngine(cfg.DataDir, cfg.Store)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	// The Go heap's share of the memory bound; GOMEMLIMIT, when set, is the
	// operator's and wins.
	if os.Getenv("GOMEMLIMIT") == "" && cfg.HeapLimitMB > 0 {
		limit := cfg.HeapLimitMB
		if engine == pebbleEngine && pebbleCacheOnHeap {
			// Pebble's block cache has its own bound; where it is on the
			// Go heap, the heap gets that much more. Elsewhere the cache
			// is outside it, and counting it twice would let the process
			// grow past its bound by as much.
			limit += cfg.PebbleCacheMB
		}
		debug.SetMemoryLimit(int64(limit) << 20)
	}
	log, tracing, err := telemetry.Start(ctx, "aggregator", logw, cfg.Log, cfg)
	if err != nil {
		return err
	}
	// Last: the spans of the final commits are flushed too.
	defer func() { err = errors.Join(err, tracing.Close()) }()

	store, err := openStore(ctx, engine, cfg, log)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	// Commits what the group commit still queues, before the tracer closes.
	defer func() {
		if cerr := store.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()
	// Stopped before the store closes (deferred after it).
	stopRetention := runRetention(ctx, store, cfg.Retention, log)
	defer stopRetention()

	metrics := telemetry.NewMetrics()
	claimer := memory.New("aggregator", 30*time.Second, claimWindow(cfg.StoreDedupWindow), cfg.ClaimCacheKeys)
	proc := process.New(claimer, store, log, metrics, process.WithTracerProvider(tracing.Provider))
	bus := local.New(proc)

	publish := ingest.New(bus, ingest.Options{
		MaxBodyBytes: cfg.MaxBodyBytes,
		Limits:       event.Limits{MaxEvents: cfg.MaxEvents, MaxPayloadBytes: cfg.MaxPayloadBytes},
		Timeout:      cfg.PublishTimeout,
		Rate:         ingest.RateLimit{EventsPerSecond: cfg.PublishRate, Burst: cfg.PublishBurst},
		Registerer:   metrics.Registry,
	}, log, metrics)
	keys, err := auth.Open(ctx, cfg.APIKeys, cfg.APIKeysFile, log)
	if err != nil {
		return err
	}
	var drain health.Drain
	policy := cfg.Policy()
	h := api.Handler(api.Routes{
		Publish: publish,
		Query: query.New(store, started, log,
			query.WithRetention(policy), query.WithSize(store.Size)),
		Ready: health.Ready(2*time.Second, map[string]health.Check{
			engine:     store.Ping,
			"shutdown": drain.Check,
		}),
		Metrics: metrics.Handler(),
		Keys:    keys,
		// The store's unique key is the judge of duplicates, so the window
		// is the store's lifetime whatever the claimer's cache remembers.
		Console: console.New(console.Options{Mode: console.AllInOne, Engine: engine, Store: store,
			Retention: policy.Default, RetentionTopics: policy.Topics, DedupWindow: policy.DedupWindow, Log: log}),
		Wrap: telemetry.HTTPMiddleware(metrics, tracing.Provider, tracing.Propagator),
	})
	err = server.Serve(ctx, cfg.Addr, h, log, server.Options{
		Draining: drain.Begin,
		Delay:    cfg.ShutdownDelay,
		Timeout:  cfg.ShutdownTimeout,
		Ready:    ready,
	})
	// Publish is synchronous (it returns once its events are committed), so
	// the bus holds nothing: Close only refuses what a request cut by the
	// shutdown timeout might still try. The store's Close, deferred above,
	// then commits the group-commit queue and closes the database.
	bus.Close()
	log.Info("stopped", "uptime", time.Since(started).String())
	return err
}

// store is what the all-in-one needs of its embedded store.
type store interface {
	process.Store
	query.Reader
	retention.Store
	Size(ctx context.Context) (events, bytes int64, err error)
	Ping(ctx context.Context) error
	Close() error
}

// The embedded engines, as --store names them, and where each keeps its
// data under the data directory.
const (
	sqliteEngine = "sqlite"
	pebbleEngine = "pebble"
	sqliteFile   = "events.db"
	pebbleDir    = "pebble"
)

// storeEngine is the engine to open in dataDir. auto takes the engine of the
// store already there, and Pebble (the faster on random ids) for a new one,
// so a data directory written before Pebble was the default stays SQLite.
// A named engine is refused on a directory holding only the other's data:
// starting empty beside it would look like every stored event had been lost.
func storeEngine(dataDir, want string) (string, error) {
	holds := func(name string) (bool, error) {
		_, err := os.Stat(filepath.Join(dataDir, name))
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("look for a store in %s: %w", dataDir, err)
		}
		return true, nil
	}
	sqliteThere, err := holds(sqliteFile)
	if err != nil {
		return "", err
	}
	pebbleThere, err := holds(pebbleDir)
	if err != nil {
		return "", err
	}
	switch {
	case want == "auto" && sqliteThere && pebbleThere:
		return "", fmt.Errorf("%s holds a store of each engine (%s and %s/): choose one with --store", dataDir, sqliteFile, pebbleDir)
	case want == "auto" && sqliteThere:
		return sqliteEngine, nil
	case want == "auto":
		return pebbleEngine, nil
	case want == sqliteEngine && !sqliteThere && pebbleThere, want == pebbleEngine && !pebbleThere && sqliteThere:
		return "", fmt.Errorf("%s holds a store of the other engine, not one of --store %s: "+
			"choose that engine (or auto) or another data directory", dataDir, want)
	}
	return want, nil
}

// openStore opens the engine that storeEngine chose.
func openStore(ctx context.Context, engine string, cfg *config.Aggregator, log *slog.Logger) (store, error) {
	log.Info("store", "engine", engine, "data_dir", cfg.DataDir)
	if engine == pebbleEngine {
		return pebble.Open(ctx, filepath.Join(cfg.DataDir, pebbleDir), pebble.WithLogger(log), pebble.WithSync(cfg.Sync),
			pebble.WithCache(int64(cfg.PebbleCacheMB)<<20), pebble.WithMemtable(int64(cfg.PebbleMemtableMB)<<20),
			pebble.WithFilter(int64(cfg.PebbleFilterMB)<<20))
	}
	return sqlite.Open(ctx, filepath.Join(cfg.DataDir, sqliteFile), sqlite.WithSync(cfg.Sync),
		sqlite.WithCache(int64(cfg.SQLiteCacheMB)<<20), sqlite.WithMmap(int64(cfg.SQLiteMmapMB)<<20))
}

// runRetention deletes expired events in the background until the returned
// stop is called.
func runRetention(ctx context.Context, store retention.Store, cfg config.Retention, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		retention.New(store, cfg.Policy(), cfg.RetentionBatch, log).Run(ctx, cfg.RetentionInterval)
	}()
	return func() { cancel(); <-done }
}

// claimWindow is how long the in-memory claimer remembers a stored event: a
// day, and never longer than the store's dedup window, past which a copy is
// stored again.
func claimWindow(storeWindow time.Duration) time.Duration {
	if storeWindow > 0 {
		return min(24*time.Hour, storeWindow)
	}
	return 24 * time.Hour
}
