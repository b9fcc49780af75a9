// Package config holds the settings the binaries share. Each struct is a set of
// kong flags whose `env` tags are the one source of truth for the environment
// variable names: the Helm chart, docker-compose and the docs are tested
// against them.
package config

import (
	"time"
)

// HTTP configures the HTTP server of a binary. The listen address default is
// the kong variable ${http_addr}, so each binary keeps its own port.
type HTTP struct {
	Addr    string   `name:"addr" env:"AGGREGATOR_ADDR" default:"${http_addr}" help:"Address the HTTP server listens on."`
	APIKeys []string `name:"api-keys" env:"AGGREGATOR_API_KEYS" sep:"," secret:"true" help:"Comma-separated API keys; when set, /publish, /events, /stats and /topics need 'Authorization: Bearer <key>'."`
}

// Limits bounds what one publish request may carry and how long it may wait.
type Limits struct {
	MaxBodyBytes    int64         `name:"max-body-bytes" env:"AGGREGATOR_MAX_BODY_BYTES" default:"16777216" help:"Largest accepted request body in bytes."`
	MaxEvents       int           `name:"max-events" env:"AGGREGATOR_MAX_EVENTS" default:"10000" help:"Most events accepted in one request."`
	MaxPayloadBytes int           `name:"max-payload-bytes" env:"AGGREGATOR_MAX_PAYLOAD_BYTES" default:"262144" help:"Largest encoded payload of one event in bytes."`
	PublishTimeout  time.Duration `name:"publish-timeout" env:"AGGREGATOR_PUBLISH_TIMEOUT" default:"10s" help:"How long a publish request waits for the bus or store before answering 503."`
}

// Log configures the structured logger.
type Log struct {
	Level  string `name:"log-level" env:"AGGREGATOR_LOG_LEVEL" default:"info" enum:"debug,info,warn,error" help:"Log level (debug, info, warn, error)."`
	Format string `name:"log-format" env:"AGGREGATOR_LOG_FORMAT" default:"json" enum:"json,text" help:"Log format (json, text)."`
}

// Kafka names the cluster and the topics the events travel through.
type Kafka struct {
	Brokers           []string      `name:"kafka-brokers" env:"AGGREGATOR_KAFKA_BROKERS" default:"127.0.0.1:9092" sep:"," help:"Comma-separated Kafka bootstrap brokers."`
	Topic             string        `name:"kafka-topic" env:"AGGREGATOR_KAFKA_TOPIC" default:"events" help:"Topic the events are produced to."`
	DLQTopic          string        `name:"kafka-dlq-topic" env:"AGGREGATOR_KAFKA_DLQ_TOPIC" default:"events.dlq" help:"Dead-letter topic for undecodable records."`
	Partitions        int           `name:"kafka-partitions" env:"AGGREGATOR_KAFKA_PARTITIONS" default:"12" help:"Partitions of the events topic when it is created."`
	ReplicationFactor int           `name:"kafka-replication-factor" env:"AGGREGATOR_KAFKA_REPLICATION_FACTOR" default:"1" help:"Replication factor of the topics when they are created."`
	BatchTimeout      time.Duration `name:"kafka-batch-timeout" env:"AGGREGATOR_KAFKA_BATCH_TIMEOUT" default:"0s" help:"How long the producer waits for more records before sending a partition's batch (0: at once; concurrent requests still share produce requests while earlier ones are in flight)."`
	KafkaSecurity     `embed:""`
}

// Consumer configures how a worker reads and batches records.
type Consumer struct {
	Group       string        `name:"kafka-group" env:"AGGREGATOR_KAFKA_GROUP" default:"aggregator-workers" help:"Kafka consumer group of the workers."`
	BatchSize   int           `name:"batch-size" env:"AGGREGATOR_BATCH_SIZE" default:"500" help:"Most records processed in one store transaction."`
	BatchLinger time.Duration `name:"batch-linger" env:"AGGREGATOR_BATCH_LINGER" default:"5ms" help:"How long a partition waits to fill a batch."`
}

// Postgres configures the event store of the distributed mode.
type Postgres struct {
	URL            string `name:"postgres-url" env:"AGGREGATOR_POSTGRES_URL" default:"postgres://aggregator:aggregator@127.0.0.1:5432/aggregator?sslmode=disable" secret:"true" help:"Postgres connection URL."`
	MaxConns       int    `name:"postgres-max-conns" env:"AGGREGATOR_POSTGRES_MAX_CONNS" default:"8" help:"Size of the connection pool."`
	MigrateOnStart bool   `name:"migrate-on-start" env:"AGGREGATOR_MIGRATE_ON_START" default:"true" negatable:"" help:"Apply the schema migrations at start."`
}

// Redis configures the claim leases of the distributed mode.
type Redis struct {
	URL         string        `name:"redis-url" env:"AGGREGATOR_REDIS_URL" default:"redis://127.0.0.1:6379/0" secret:"true" help:"Redis URL."`
	LeaseTTL    time.Duration `name:"lease-ttl" env:"AGGREGATOR_LEASE_TTL" default:"30s" help:"How long a worker's claim on an event lasts."`
	DedupWindow time.Duration `name:"dedup-window" env:"AGGREGATOR_DEDUP_WINDOW" default:"24h" help:"How long a processed event is remembered in Redis."`
}
