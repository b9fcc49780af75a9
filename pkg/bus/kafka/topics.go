package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec is a topic to create when missing.
type TopicSpec struct {
	Name              string
	Partitions        int               // default 12
	ReplicationFactor int               // default 1
	Configs           map[string]string // topic-level settings, e.g. retention.ms
}

// DefaultPartitions is the partition count of a TopicSpec that sets none.
const DefaultPartitions = 12

// metadataPoll is how often EnsureTopics looks for the created topics.
const metadataPoll = 100 * time.Millisecond

// EnsureTopics creates the topics that do not exist and returns once the
// cluster's metadata shows every one of them with a leader for each
// partition. It is idempotent and safe to run from many processes at once.
// An existing topic is left as it is, whatever its partition count.
func EnsureTopics(ctx context.Context, brokers []string, topics ...TopicSpec) error {
	if len(brokers) == 0 {
		return errors.New("ensure topics: no brokers")
	}
	// A private transport: the default one caches metadata for seconds, so a
	// topic created by another process could look missing for that long.
	tr := &kafka.Transport{MetadataTTL: metadataPoll}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}

	req := &kafka.CreateTopicsRequest{}
	names := make([]string, 0, len(topics))
	for _, t := range topics {
		if t.Name == "" {
			return errors.New("ensure topics: empty topic name")
		}
		tc := kafka.TopicConfig{
			Topic:             t.Name,
			NumPartitions:     orDefault(t.Partitions, DefaultPartitions),
			ReplicationFactor: orDefault(t.ReplicationFactor, 1),
		}
		for k, v := range t.Configs {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, tc)
		names = append(names, t.Name)
	}
	if len(names) == 0 {
		return nil
	}
	res, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", names, err)
	}
	for name, err := range res.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", name, err)
		}
	}
	return waitTopics(ctx, client, names)
}

// waitTopics polls metadata until every topic has a leader on each partition.
func waitTopics(ctx context.Context, client *kafka.Client, names []string) error {
	tick := time.NewTicker(metadataPoll)
	defer tick.Stop()
	var last error
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err == nil {
			last = topicsReady(md, names)
			if last == nil {
				return nil
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for topics %v: %w (last: %w)", names, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func topicsReady(md *kafka.MetadataResponse, names []string) error {
	found := make(map[string]kafka.Topic, len(md.Topics))
	for _, t := range md.Topics {
		found[t.Name] = t
	}
	for _, name := range names {
		t, ok := found[name]
		switch {
		case !ok:
			return fmt.Errorf("topic %s not in metadata", name)
		case t.Error != nil:
			return fmt.Errorf("topic %s: %w", name, t.Error)
		case len(t.Partitions) == 0:
			return fmt.Errorf("topic %s has no partitions yet", name)
		}
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				return fmt.Errorf("topic %s partition %d has no leader yet", name, p.ID)
			}
		}
	}
	return nil
}

func orDefault(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}
