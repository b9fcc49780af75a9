package testdeps

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// KafkaBrokers returns the test Kafka's bootstrap brokers,
// AGGREGATOR_TEST_KAFKA_BROKERS (comma-separated) or 127.0.0.1:9092. It
// fails the test when no broker answers within a few seconds.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	addrs := os.Getenv("AGGREGATOR_TEST_KAFKA_BROKERS")
	if addrs == "" {
		addrs = "127.0.0.1:9092"
	}
	var brokers []string
	for _, b := range strings.Split(addrs, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		if last = pingKafka(ctx, brokers); last == nil {
			return brokers
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("Kafka is not reachable at %s (%v); start it with `scripts/deps.sh up kafka` "+
		"or point AGGREGATOR_TEST_KAFKA_BROKERS at a broker", addrs, last)
	return nil
}

// pingKafka asks a broker for its metadata: an open port alone could be
// something else, or a broker still starting.
func pingKafka(ctx context.Context, brokers []string) error {
	var last error
	for _, b := range brokers {
		conn, err := (&kafka.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", b)
		if err != nil {
			last = err
			continue
		}
		_, err = conn.Brokers()
		conn.Close()
		if err == nil {
			return nil
		}
		last = err
	}
	return last
}

var unsafeTopicChars = regexp.MustCompile(`[^a-zA-Z0-9-]+`)

// NewKafkaTopic creates a topic with a name unique to this test run and the
// given partition count, waits until every partition has a leader, and
// deletes it when the test ends.
func NewKafkaTopic(t testing.TB, partitions int) string {
	t.Helper()
	brokers := KafkaBrokers(t)
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	base := strings.Trim(unsafeTopicChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 80 {
		base = base[:80]
	}
	name := "test-" + base + "-" + hex.EncodeToString(suffix[:])

	// A private transport with a short metadata TTL: the default caches
	// metadata for seconds, hiding a topic just created.
	tr := &kafka.Transport{MetadataTTL: 100 * time.Millisecond}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: name, NumPartitions: partitions, ReplicationFactor: 1,
	}}})
	if err == nil {
		err = res.Errors[name]
	}
	if err != nil {
		tr.CloseIdleConnections()
		t.Fatalf("create topic %s: %v", name, err)
	}
	t.Cleanup(func() {
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{name}})
		if err == nil {
			err = res.Errors[name]
		}
		if err != nil && !errors.Is(err, kafka.UnknownTopicOrPartition) {
			t.Errorf("delete topic %s: %v", name, err)
		}
	})
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{name}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil &&
			len(md.Topics[0].Partitions) == partitions && allLed(md.Topics[0].Partitions) {
			return name
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topic %s: no leader for every partition after 30s (last metadata error: %v)", name, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func allLed(ps []kafka.Partition) bool {
	for _, p := range ps {
		if p.Error != nil || p.Leader.Host == "" {
			return false
		}
	}
	return true
}
