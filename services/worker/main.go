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
	"golang.org/x/sync/errgroup"

	"github.com/event-aggregator/event-aggregator/pkg/api"
	"github.com/event-aggregator/event-aggregator/pkg/bus/kafka"
	"github.com/event-aggregator/event-aggregator/pkg/claim/redis"
	"github.com/event-aggregator/event-aggregator/pkg/config"
	"github.com/event-aggregator/event-aggregator/pkg/health"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/retention"
	"github.com/event-aggregator/event-aggregator/pkg/server"
	"github.com/event-aggregator/event-aggregator/pkg/store/postgres"
	"github.com/event-aggregator/event-aggregator/pkg/telemetry"
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

func serve(ctx context.Context, cfg *config.Worker, logw io.Writer) (err error) {
	log, tracing, err := telemetry.Start(ctx, "worker", logw, cfg.Log, cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, tracing.Close()) }()

	// The database clients are instrumented only when spans leave the
	// process: their hooks cost time even with a noop provider (redisotel
	// formats every pipelined command, ~1 ms per 1,000-key pipeline).
	var pgOpts []postgres.Option
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
	topics.RequireGroup(cfg.Group)
	store, err := postgres.Open(ctx, cfg.Postgres.URL, cfg.MaxConns, pgOpts...)
	if err != nil {
		return err
	}
	defer store.Close()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = store.Await(wctx, log)
	if err == nil && cfg.MigrateOnStart {
		err = store.Migrate(wctx)
	}
	if err == nil {
		err = topics.Await(wctx, log)
	}
	cancel()
	if err != nil {
		return err
	}

	metrics := telemetry.NewMetrics()
	rdb, err := redis.NewClient(cfg.Redis.URL)
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
	storeID, err := store.ID(ctx)
	if err != nil {
		return err
	}
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

	h := api.Handler(api.Routes{
		Ready: health.Ready(2*time.Second, map[string]health.Check{
			"postgres": store.Ping,
			"kafka":    topics.Ready,
		}),
		Metrics: metrics.Handler(),
		Wrap:    telemetry.HTTPMiddleware(metrics, tracing.Provider, tracing.Propagator),
	})
	log.Info("worker ready", "owner", owner)
	g, gctx := errgroup.WithContext(ctx)
	// The consumer finishes its in-flight batches when ctx ends.
	g.Go(func() error { return consumer.Run(gctx) })
	g.Go(func() error { return server.Serve(gctx, cfg.Addr, h, log, nil) })
	// Workers take turns on a Postgres advisory lock to delete expired events.
	g.Go(func() error {
		retention.New(store, cfg.Policy(), cfg.RetentionBatch, log).Run(gctx, cfg.RetentionInterval)
		return nil
	})
	err = g.Wait()
	log.Info("stopped")
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
