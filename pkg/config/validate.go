package config

import (
	"errors"
	"fmt"
	"time"
)

// kafkaMaxRecord is the largest payload a Kafka record may carry with the
// broker's default message.max.bytes (1 MiB) and room for the event's other
// fields and headers.
const kafkaMaxRecord = 960 << 10

// Validate checks the all-in-one settings; kong calls it after parsing.
func (c *Aggregator) Validate() error {
	errs := []error{c.HTTP.validate(), c.Limits.validate(), c.Memory.validate(), c.RateLimit.validate(),
		c.Shutdown.validate(), c.Retention.validate()}
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	return errors.Join(errs...)
}

// Validate checks the ingest settings.
func (c *Ingest) Validate() error {
	errs := []error{c.HTTP.validate(), c.Limits.validate(), c.Kafka.validate(), c.RateLimit.validate(), c.Shutdown.validate()}
	if c.MaxPayloadBytes > kafkaMaxRecord {
		errs = append(errs, fmt.Errorf("--max-payload-bytes %d: a Kafka record holds at most %d", c.MaxPayloadBytes, kafkaMaxRecord))
	}
	return errors.Join(errs...)
}

// Validate checks the worker settings.
func (c *Worker) Validate() error {
	errs := []error{c.HTTP.validate(), c.Kafka.validate(), c.Consumer.validate(),
		c.Postgres.validate(), c.Redis.validate(), c.Shutdown.validate(), c.PGBounds.validate(),
		c.RedisTLS.validate(), c.Retention.validate()}
	// Redis caches the store's "duplicate" verdict: a done mark that outlived
	// the store's window would drop a copy the store would store again.
	if w := c.StoreDedupWindow; w > 0 && c.DedupWindow > w {
		errs = append(errs, fmt.Errorf("--dedup-window %s must not exceed --store-dedup-window %s", c.DedupWindow, w))
	}
	return errors.Join(errs...)
}

// Validate checks the query settings.
func (c *Query) Validate() error {
	return errors.Join(c.HTTP.validate(), c.Postgres.validate(), c.Shutdown.validate(), c.PGBounds.validate(),
		c.Console.validate(), c.Retention.validate())
}

func (c *HTTP) validate() error {
	if c.Addr == "" {
		return errors.New("--addr must not be empty")
	}
	return nil
}

func (c *Limits) validate() error {
	var errs []error
	if c.MaxBodyBytes < 1 {
		errs = append(errs, errors.New("--max-body-bytes must be positive"))
	}
	if c.MaxEvents < 1 {
		errs = append(errs, errors.New("--max-events must be positive"))
	}
	if c.MaxPayloadBytes < 2 || int64(c.MaxPayloadBytes) > c.MaxBodyBytes {
		errs = append(errs, errors.New("--max-payload-bytes must be at least 2 and at most --max-body-bytes"))
	}
	if c.PublishTimeout <= 0 {
		errs = append(errs, errors.New("--publish-timeout must be positive"))
	}
	return errors.Join(errs...)
}

func (c *Kafka) validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("--kafka-brokers must name a broker"))
	}
	if c.Topic == "" || c.DLQTopic == "" || c.Topic == c.DLQTopic {
		errs = append(errs, errors.New("--kafka-topic and --kafka-dlq-topic must be set and differ"))
	}
	if c.Partitions < 1 || c.ReplicationFactor < 1 {
		errs = append(errs, errors.New("--kafka-partitions and --kafka-replication-factor must be positive"))
	}
	if c.BatchTimeout < 0 {
		errs = append(errs, errors.New("--kafka-batch-timeout must not be negative"))
	}
	if c.MinInsyncReplicas > c.ReplicationFactor {
		errs = append(errs, errors.New("--kafka-min-insync-replicas must not exceed --kafka-replication-factor"))
	}
	errs = append(errs, c.KafkaSecurity.validate())
	return errors.Join(errs...)
}

func (c *Consumer) validate() error {
	var errs []error
	if c.Group == "" {
		errs = append(errs, errors.New("--kafka-group must not be empty"))
	}
	if c.BatchSize < 1 || c.BatchSize > 10_000 {
		errs = append(errs, errors.New("--batch-size must be from 1 to 10000"))
	}
	if c.BatchLinger < 0 {
		errs = append(errs, errors.New("--batch-linger must not be negative"))
	}
	return errors.Join(errs...)
}

func (c *Postgres) validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("--postgres-url must not be empty"))
	}
	if c.MaxConns < 1 {
		errs = append(errs, errors.New("--postgres-max-conns must be positive"))
	}
	return errors.Join(errs...)
}

func (c *Redis) validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("--redis-url must not be empty"))
	}
	// A zero TTL would make keys that never expire.
	if c.LeaseTTL < time.Millisecond {
		errs = append(errs, errors.New("--lease-ttl must be at least 1ms"))
	}
	if c.DedupWindow < c.LeaseTTL {
		errs = append(errs, errors.New("--dedup-window must be at least --lease-ttl"))
	}
	return errors.Join(errs...)
}
