// Command lagwatch samples the workers' consumer lag until it is stopped
// (SIGINT or SIGTERM): for each partition of the events topic, the log end
// offset minus the next offset the workers stored in Postgres with the rows
// (the offsets that count; Kafka's committed offsets trail them).
//
//	lagwatch [-postgres-url URL] [-brokers B] [-topic T] [-interval D] [-csv FILE]
//
// Each sample is a CSV line "unix_ms,lag" in -csv; at the end it prints a
// JSON summary: samples, max lag and when, and the last lag.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
)

type summary struct {
	Samples  int   `json:"samples"`
	Errors   int   `json:"errors"`
	MaxLag   int64 `json:"max_lag"`
	MaxAtMS  int64 `json:"max_at_unix_ms"`
	LastLag  int64 `json:"last_lag"`
	LastAtMS int64 `json:"last_at_unix_ms"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	pgURL := envOr("AGGREGATOR_POSTGRES_URL", "postgres://aggregator:aggregator@127.0.0.1:5432/aggregator?sslmode=disable")
	flag.StringVar(&pgURL, "postgres-url", pgURL, "Postgres URL of the workers' store")
	brokers := flag.String("brokers", envOr("AGGREGATOR_KAFKA_BROKERS", "127.0.0.1:9092"), "comma-separated Kafka brokers")
	topic := flag.String("topic", envOr("AGGREGATOR_KAFKA_TOPIC", "events"), "events topic")
	interval := flag.Duration("interval", 500*time.Millisecond, "time between samples")
	csvPath := flag.String("csv", "", "file for the samples (unix_ms,lag)")
	flag.Parse()

	var csv io.Writer = io.Discard
	if *csvPath != "" {
		f, err := os.Create(*csvPath)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		csv = f
	}
	pool, err := pgxpool.New(context.Background(), pgURL)
	if err != nil {
		fail(err)
	}
	defer pool.Close()
	tr := &kafka.Transport{MetadataTTL: time.Second}
	defer tr.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(strings.Split(*brokers, ",")...), Transport: tr, Timeout: 5 * time.Second}

	var s summary
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lag, err := sample(sctx, client, pool, *topic)
		cancel()
		now := time.Now().UnixMilli()
		if err != nil {
			s.Errors++
			fmt.Fprintln(os.Stderr, "lagwatch:", err)
		} else {
			s.Samples++
			s.LastLag, s.LastAtMS = lag, now
			if lag > s.MaxLag || s.MaxAtMS == 0 {
				s.MaxLag, s.MaxAtMS = lag, now
			}
			fmt.Fprintf(csv, "%d,%d\n", now, lag)
		}
		select {
		case <-ctx.Done():
			_ = json.NewEncoder(os.Stdout).Encode(s)
			return
		case <-tick.C:
		}
	}
}

// sample returns the total lag over the topic's partitions.
func sample(ctx context.Context, client *kafka.Client, pool *pgxpool.Pool, topic string) (int64, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return 0, fmt.Errorf("topic %s not found", topic)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return 0, err
	}
	stored := map[int]int64{}
	rows, err := pool.Query(ctx, `SELECT partition, next FROM offsets WHERE topic = $1`, topic)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var p int
		var next int64
		if err := rows.Scan(&p, &next); err != nil {
			rows.Close()
			return 0, err
		}
		stored[p] = next
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var lag int64
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return 0, po.Error
		}
		next, ok := stored[po.Partition]
		if !ok {
			next = po.FirstOffset // nothing stored yet: all of it is lag
		}
		lag += max(po.LastOffset-next, 0)
	}
	return lag, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "lagwatch:", err)
	os.Exit(1)
}
