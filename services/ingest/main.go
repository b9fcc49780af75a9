// Command ingest accepts events over HTTP and produces them to Kafka. It
// answers 202 only once every in-sync replica has the events.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/api"
	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/bus/kafka"
	"github.com/event-aggregator/event-aggregator/pkg/config"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/health"
	"github.com/event-aggregator/event-aggregator/pkg/ingest"
	"github.com/event-aggregator/event-aggregator/pkg/server"
	"github.com/event-aggregator/event-aggregator/pkg/startup"
	"github.com/event-aggregator/event-aggregator/pkg/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

type cli struct {
	config.Ingest
	Serve       struct{} `cmd:"" default:"1" help:"Accept events and produce them to Kafka (the default)."`
	Healthcheck struct{} `cmd:"" help:"Ask the local server for /healthz and exit 0 when healthy (for container healthchecks)."`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c cli
	cmd, done, err := config.Parse(&c, args, "ingest",
		"Event Aggregator ingest: POST /publish → Kafka.", config.IngestAddr, stdout, stderr)
	if err != nil || done {
		return err
	}
	if cmd == "healthcheck" {
		return server.Healthcheck(ctx, c.Addr)
	}
	return serve(ctx, &c.Ingest, stderr)
}

// attemptTimeout bounds one attempt at a dependency during start-up.
const attemptTimeout = 10 * time.Second

// serve listens at once and brings Kafka up in the background: until the
// topics exist, /readyz says why and /publish answers 503.
func serve(ctx context.Context, cfg *config.Ingest, logw io.Writer) (err error) {
	log, tracing, err := telemetry.Start(ctx, "ingest", logw, cfg.Log, cfg)
	if err != nil {
		return err
	}
	// Last: the spans of the final requests are flushed too.
	defer func() { err = errors.Join(err, tracing.Close()) }()

	sec, err := kafka.SecurityFromConfig(&cfg.KafkaSecurity)
	if err != nil {
		return err
	}
	topics, err := kafka.NewTopics(cfg.Brokers, sec, cfg.CreateTopics,
		kafka.EventTopics(cfg.Topic, cfg.DLQTopic, cfg.Partitions, cfg.ReplicationFactor, cfg.MinInsyncReplicas)...)
	if err != nil {
		return err
	}
	producer, err := kafka.NewProducer(kafka.ProducerConfig{
		Brokers:      cfg.Brokers,
		Security:     sec,
		Topic:        cfg.Topic,
		BatchTimeout: cfg.BatchTimeout,
		Tracer:       tracing.Provider,
		Headers:      kafka.TraceHeaders(tracing.Propagator),
	})
	if err != nil {
		return fmt.Errorf("kafka producer: %w", err)
	}
	deps := startup.New(log, startup.Backoff{})
	deps.Start(ctx, "kafka", startup.Bounded(attemptTimeout, topics.Ensure))
	var drain health.Drain
	metrics := telemetry.NewMetrics()
	keys, err := auth.Open(ctx, cfg.APIKeys, cfg.APIKeysFile, log)
	if err != nil {
		return err
	}
	h := api.Handler(api.Routes{
		Publish: deps.Require(ingest.New(producer, ingest.Options{
			MaxBodyBytes: cfg.MaxBodyBytes,
			Limits:       event.Limits{MaxEvents: cfg.MaxEvents, MaxPayloadBytes: cfg.MaxPayloadBytes},
			Timeout:      cfg.PublishTimeout,
			Rate:         ingest.RateLimit{EventsPerSecond: cfg.PublishRate, Burst: cfg.PublishBurst},
			Registerer:   metrics.Registry,
		}, log, metrics), "kafka"),
		Ready: health.Ready(2*time.Second, map[string]health.Check{
			"kafka":    deps.CheckThen("kafka", topics.Ready),
			"shutdown": drain.Check,
		}),
		Metrics: metrics.Handler(),
		Keys:    keys,
		Wrap:    telemetry.HTTPMiddleware(metrics, tracing.Provider, tracing.Propagator),
	})
	err = server.Serve(ctx, cfg.Addr, h, log, server.Options{
		Draining: drain.Begin,
		Delay:    cfg.ShutdownDelay,
		Timeout:  cfg.ShutdownTimeout,
	})
	// No request is in flight any more (each returned once its records were
	// acknowledged): close the writer and its connections.
	if cerr := producer.Close(); cerr != nil {
		log.Error("closing the producer", "err", cerr)
	}
	log.Info("stopped")
	return err
}
