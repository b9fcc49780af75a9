package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Await runs Ensure until it succeeds or ctx ends: in a fresh stack the
// broker often starts after the services, and a missing topic or ACL may be
// fixed by an operator meanwhile. Each distinct error is logged once, so a
// wrong password is one log line, not one per attempt.
func (t *Topics) Await(ctx context.Context, log *slog.Logger) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 500 * time.Millisecond
	b.MaxInterval = 10 * time.Second
	var logged string
	for {
		err := t.Ensure(ctx)
		if err == nil {
			if logged != "" {
				log.Info("kafka topics ready")
			}
			return nil
		}
		if msg := err.Error(); msg != logged && ctx.Err() == nil {
			log.Error("kafka not ready; retrying", "err", err)
			logged = msg
		} else {
			log.Debug("kafka still not ready", "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ensure kafka topics: %w", err)
		case <-time.After(b.NextBackOff()):
		}
	}
}

// EventTopics are the topics of the system: the events topic and its
// single-partition dead-letter topic. Replicated, both require minISR
// in-sync replicas (0: two): acks=all is otherwise met by the leader alone
// once the others fall behind, and an acknowledged record dies with it.
// Only topics created here get it: Ensure leaves an existing topic as it is.
func EventTopics(topic, dlq string, partitions, replication, minISR int) []TopicSpec {
	if minISR <= 0 && replication > 1 {
		minISR = 2
	}
	var configs map[string]string
	if minISR > 0 {
		configs = map[string]string{"min.insync.replicas": strconv.Itoa(minISR)}
	}
	return []TopicSpec{
		{Name: topic, Partitions: partitions, ReplicationFactor: replication, Configs: configs},
		{Name: dlq, Partitions: 1, ReplicationFactor: replication, Configs: configs},
	}
}
