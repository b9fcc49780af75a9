// Command worker consumes events from Kafka, claims each in Redis and stores
// it exactly once in Postgres, with its counters and consumed offsets in the
// same transaction. Its HTTP server serves the probes and metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	goredis "github.com/redis/go-redis/v9"

	"github.com/event-aggregator/event-aggregator/pkg/api"
	"github.com/event-aggregator/event-aggregator/pkg/bus/kafka"
	"github.com/event-aggregator/event-aggregator/pkg/claim/redis"
	"github.com/event-aggregator/event-aggregator/pkg/config"
	"github.com/event-aggregator/event-aggregator/pkg/health"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/retention"
	"github.com/event-aggregator/event-aggregator/pkg/server"
	"github.com/event-aggregator/event-aggregator/pkg/startup"
	"github.com/event-aggregator/event-aggregator/pkg/store/postgres"
	"github.com/event-aggregator/event-aggregator/pkg/telemetry"
	"github.com/event-aggregator/event-aggregator/pkg/tlsconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

type cli struct {
	config.Worker
	Serve       struct{} `cmd:"" default:"1" help:"Consume and store events (the default)."`
	Migrate     struct{} `cmd:"" help:"Apply the Postgres schema migrations and exit."`
	Healthcheck struct{} `cmd:"" help:"Ask the local server for /healthz and exit 0 when healthy (for container healthchecks)."`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c cli
	cmd, done, err := config.Parse(&c, args, "worker",
		"Event Aggregator worker: Kafka → Redis claim → Postgres.", config.WorkerAddr, stdout, stderr)
	if err != nil || done {
		return err
	}
	switch cmd {
	case "healthcheck":
		return server.Healthcheck(ctx, c.Addr)
	case "migrate":
		return postgres.MigrateWhenReady(ctx, c.Postgres.URL, slog.New(slog.NewJSONHandler(stderr, nil)))
	}
	return serve(ctx, &c.Worker, stderr)
}

// attemptTimeout bounds one attempt at a dependency during start-up.
const attemptTimeout = 10 * time.Second

// serve listens at once, brings Postgres, the schema, Kafka and Redis up in
// the background (each a readiness check until it is up), then consumes.
// On SIGTERM the consumer finishes its batches and leaves the group at once
// while the HTTP server drains.
func serve(ctx context.Context, cfg *config.Worker, logw io.Writer) (err error) {
	log, tracing, err := telemetry.Start(ctx, "worker", logw, cfg.Log, cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tracing.Close()) }()

	// Bounded sessions: a stalled worker releases its locks within seconds.
	pgOpts := []postgres.Option{postgres.WithSession(postgres.Session{
		StatementTimeout:  cfg.PostgresStatementTimeout,
		LockTimeout:       cfg.PostgresLockTimeout,
		IdleInTransaction: cfg.PostgresIdleInTransactionTimeout,
	})}
	// The database clients are instrumented only when spans leave the
	// process: their hooks cost time even with a noop provider (redisotel
	// formats every pipelined command, ~1 ms per 1,000-key pipeline).
	if tracing.Exporting {
		pgOpts = append(pgOpts, postgres.WithTracerProvider(tracing.Provider))
	}
	sec, err := kafka.SecurityFromConfig(&cfg.KafkaSecurity)
	if err != nil {
		return err
	}
	topics, err := kafka.NewTopics(cfg.Brokers, sec, cfg.CreateTopics,
		kafka.EventTopics(cfg.Topic, cfg.DLQTopic, cfg.Partitions, cfg.ReplicationFactor, cfg.MinInsyncReplicas)...)
	if err != nil {
		return err
	}
	// Not ready while the principal may not join its group either.
	topics.RequireGroup(cfg.Group)
	// Both clients connect on first use: a bad URL fails here, an
	// unreachable server is waited for below.
	store, err := postgres.Open(ctx, cfg.Postgres.URL, cfg.MaxConns, pgOpts...)
	if err != nil {
		return err
	}
	closeStore := true
	defer func() {
		if closeStore {
			store.Close()
		}
	}()
	rdb, err := redis.NewClient(cfg.Redis.URL, redis.WithTLSFiles(tlsconfig.Files{
		CAFile: cfg.RedisTLSCAFile, CertFile: cfg.RedisTLSCertFile, KeyFile: cfg.RedisTLSKeyFile,
	}))
	if err != nil {
		return err
	}
	defer rdb.Close()
	if tracing.Exporting {
		// No db.statement: a claim pipeline's would list every key of the
		// batch (~100 KB per span).
		err := redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(tracing.Provider),
			redisotel.WithDBStatement(false))
		if err != nil {
			return fmt.Errorf("trace redis: %w", err)
		}
	}
	redis.SetLogger(log) // go-redis logs every failed dial; keep those at debug

	deps := startup.New(log, startup.Backoff{})
	deps.Start(ctx, "postgres", startup.Bounded(attemptTimeout, store.Ping))
	var storeID string
	// The schema: migrated here, or by the migration Job (the identity row
	// appears once it has run); waits for the lock while another migrates.
	deps.Start(ctx, "schema", func(ctx context.Context) error {
		if cfg.MigrateOnStart {
			deps.Note("schema", "migrating (waits while another process holds the migration lock)")
			if err := store.Migrate(ctx); err != nil {
				return err
			}
		}
		id, err := store.ID(ctx)
		storeID = id
		return err
	}, "postgres")
	deps.Start(ctx, "kafka", startup.Bounded(attemptTimeout, topics.Ensure))
	// Redis is waited for once, so a wrong URL shows at deploy time; later
	// outages only slow the worker down (claims go through Postgres alone).
	deps.Start(ctx, "redis", startup.Bounded(attemptTimeout, func(ctx context.Context) error {
		return rdb.Ping(ctx).Err()
	}))

	metrics := telemetry.NewMetrics()
	var drain health.Drain
	h := api.Handler(api.Routes{
		Ready: health.Ready(2*time.Second, map[string]health.Check{
			"postgres": deps.CheckThen("postgres", store.Ping),
			"schema":   deps.Check("schema"),
			"kafka":    deps.CheckThen("kafka", topics.Ready),
			"redis":    deps.Check("redis"),
			"shutdown": drain.Check,
		}),
		Metrics: metrics.Handler(),
		Wrap:    telemetry.HTTPMiddleware(metrics, tracing.Provider, tracing.Propagator),
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	consumed := make(chan error, 1)
	go func() {
		if err := deps.Wait(ctx); err != nil {
			consumed <- nil // stopped before every dependency was up
			return
		}
		consumed <- consume(ctx, cfg, sec, log, metrics, tracing, store, storeID, rdb)
		cancel() // a consumer that failed takes the server down with it
	}()
	served := make(chan error, 1)
	go func() {
		served <- server.Serve(ctx, cfg.Addr, h, log, server.Options{
			Draining: drain.Begin,
			Delay:    cfg.ShutdownDelay,
			Timeout:  cfg.ShutdownTimeout,
		})
		cancel() // a server that failed takes the consumer down with it
	}()

	<-ctx.Done()
	// The consumer stops at once, not after the drain delay: nothing is
	// routed to a worker, and its partitions should move now.
	timer := time.NewTimer(cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case cerr := <-consumed:
		err = cerr
	case <-timer.C:
		// Abandoned: the batch's transaction holds its offsets, so it rolls
		// back with the connection and the next owner processes it again.
		// Closing the pool would wait for that connection: leave it to exit.
		closeStore = false
		err = fmt.Errorf("consumer still finishing its batches after %v: abandoned", cfg.ShutdownTimeout)
		log.Error("abandoning the batches in flight", "timeout", cfg.ShutdownTimeout.String())
	}
	err = errors.Join(err, <-served)
	log.Info("stopped")
	return err
}

// consume runs the consumer until ctx ends; it returns once the batches in
// flight are stored and the worker has left the group.
func consume(ctx context.Context, cfg *config.Worker, sec kafka.Security, log *slog.Logger, metrics *telemetry.Metrics,
	tracing *telemetry.Tracing, store *postgres.Store, storeID string, rdb *goredis.Client) error {
	owner := workerID()
	claimer := redis.New(rdb, owner, cfg.LeaseTTL, cfg.DedupWindow,
		// Claims are per database: marks of another one never drop an event here.
		redis.WithKeyPrefix("ea:claim:"+storeID+":"),
		redis.WithDegradedHook(func(degraded bool) {
			// Redis is a shortcut: without it the store alone decides, slower.
			metrics.SetRedisDegraded(degraded)
			if degraded {
				log.Warn("redis unreachable: going on through postgres alone")
			} else {
				log.Info("redis back: claims take the fast path again")
			}
		}))
	proc := process.New(claimer, store, log, metrics, process.WithTracerProvider(tracing.Provider))
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Brokers:     cfg.Brokers,
		Security:    sec,
		Topic:       cfg.Topic,
		DLQTopic:    cfg.DLQTopic,
		Group:       cfg.Group,
		BatchSize:   cfg.BatchSize,
		BatchLinger: cfg.BatchLinger,
		Log:         log,
		Observer:    metrics,
		Hook:        kafka.LinkProducers(tracing.Propagator),
	}, store, kafka.ProcessorHandler(proc))
	if err != nil {
		return err
	}
	log.Info("worker ready", "owner", owner)
	// Workers take turns on a Postgres advisory lock to delete expired events.
	rctx, stopRetention := context.WithCancel(ctx)
	retained := make(chan struct{})
	go func() {
		defer close(retained)
		retention.New(store, cfg.Policy(), cfg.RetentionBatch, log).Run(rctx, cfg.RetentionInterval)
	}()
	// Run finishes the batches in flight when ctx ends, then leaves the
	// group so the others take its partitions at once.
	err = consumer.Run(ctx)
	stopRetention()
	<-retained
	return err
}

// workerID names this worker in its Redis leases.
func workerID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "worker"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}
