package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// AwaitTopics runs EnsureTopics until it succeeds or ctx ends: in a fresh
// stack the broker often starts after the services.
func AwaitTopics(ctx context.Context, brokers []string, log *slog.Logger, topics ...TopicSpec) error {
	for {
		err := EnsureTopics(ctx, brokers, topics...)
		if err == nil {
			return nil
		}
		log.Warn("kafka topics not ready; retrying", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("ensure kafka topics: %w", err)
		case <-time.After(time.Second):
		}
	}
}

// Reachable returns a readiness check: some broker accepts a connection.
func Reachable(brokers []string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		var last error
		for _, b := range brokers {
			conn, err := d.DialContext(ctx, "tcp", b)
			if err == nil {
				return conn.Close()
			}
			last = err
		}
		return fmt.Errorf("no kafka broker reachable: %w", last)
	}
}

// EventTopics are the topics of the system: the events topic and its
// single-partition dead-letter topic. Replicated, both require two in-sync
// replicas: acks=all is otherwise met by the leader alone once the others
// fall behind, and an acknowledged record dies with it. Only topics created
// here get it: EnsureTopics leaves an existing topic as it is.
func EventTopics(topic, dlq string, partitions, replication int) []TopicSpec {
	var configs map[string]string
	if replication > 1 {
		configs = map[string]string{"min.insync.replicas": "2"}
	}
	return []TopicSpec{
		{Name: topic, Partitions: partitions, ReplicationFactor: replication, Configs: configs},
		{Name: dlq, Partitions: 1, ReplicationFactor: replication, Configs: configs},
	}
}
