// Command storebench measures, on one Postgres, the raw rate of the insert
// the store is built on (INSERT … SELECT FROM unnest … ON CONFLICT DO
// NOTHING, autocommit) and the rate of the worker's store path
// (postgres.Store.Persist: rows, counters and offset fence in one
// transaction), with the same batches and the same number of connections.
// Each measurement runs on a fresh scratch database, dropped afterwards.
//
//	storebench [-postgres-url URL] [-rows N] [-batch N] [-conns N] [-rounds N]
//
// It prints one JSON object; the best round of each is reported.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/store/postgres"
)

type options struct {
	url    string
	rows   int
	batch  int
	conns  int
	rounds int
}

type result struct {
	Rows              int       `json:"rows"`
	Batch             int       `json:"batch"`
	Conns             int       `json:"conns"`
	Rounds            int       `json:"rounds"`
	RawRowsPerSec     float64   `json:"raw_rows_per_sec"`
	PersistRowsPerSec float64   `json:"persist_rows_per_sec"`
	Ratio             float64   `json:"persist_to_raw"`
	RawRounds         []float64 `json:"raw_rounds"`
	PersistRounds     []float64 `json:"persist_rounds"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	def := os.Getenv("AGGREGATOR_POSTGRES_URL")
	if def == "" {
		def = "postgres://aggregator:aggregator@127.0.0.1:5432/aggregator?sslmode=disable"
	}
	var o options
	flag.StringVar(&o.url, "postgres-url", def, "Postgres URL; the role needs CREATEDB")
	flag.IntVar(&o.rows, "rows", 200000, "rows inserted per measurement")
	flag.IntVar(&o.batch, "batch", 500, "rows per statement (the worker's AGGREGATOR_BATCH_SIZE)")
	flag.IntVar(&o.conns, "conns", 4, "concurrent connections")
	flag.IntVar(&o.rounds, "rounds", 2, "measurements of each kind; the best is reported")
	flag.Parse()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "storebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.rows < 1 || o.batch < 1 || o.conns < 1 || o.rounds < 1 {
		return fmt.Errorf("rows, batch, conns and rounds must be positive")
	}
	events := makeEvents(o.rows)
	res := result{Rows: o.rows, Batch: o.batch, Conns: o.conns, Rounds: o.rounds}
	// Alternating, so both see the same machine load on average.
	for range o.rounds {
		raw, err := onScratch(ctx, o.url, func(u string) (float64, error) { return rawInsert(ctx, u, events, o) })
		if err != nil {
			return fmt.Errorf("raw insert: %w", err)
		}
		per, err := onScratch(ctx, o.url, func(u string) (float64, error) { return persist(ctx, u, events, o) })
		if err != nil {
			return fmt.Errorf("persist: %w", err)
		}
		res.RawRounds = append(res.RawRounds, raw)
		res.PersistRounds = append(res.PersistRounds, per)
		res.RawRowsPerSec = max(res.RawRowsPerSec, raw)
		res.PersistRowsPerSec = max(res.PersistRowsPerSec, per)
	}
	res.Ratio = res.PersistRowsPerSec / res.RawRowsPerSec
	return json.NewEncoder(os.Stdout).Encode(res)
}

// makeEvents builds distinct events spread over 20 topics, with payloads
// the size the publisher sends.
func makeEvents(n int) []event.Event {
	ts := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	out := make([]event.Event, n)
	for i := range out {
		out[i] = event.Event{
			Topic:     "topic-" + strconv.Itoa(i%20),
			EventID:   "bench-" + strconv.Itoa(i),
			Timestamp: ts.Add(time.Duration(i) * time.Millisecond),
			Source:    "storebench",
			Payload:   fmt.Appendf(nil, `{"seq":%d,"data":"abcdefghijklmnopqrstuvwxyz0123456789ab"}`, i),
		}
	}
	return out
}

// onScratch runs f on a fresh, migrated database and drops it afterwards.
func onScratch(ctx context.Context, base string, f func(url string) (float64, error)) (float64, error) {
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		return 0, err
	}
	defer admin.Close(context.Background())
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "storebench_" + hex.EncodeToString(b)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		return 0, err
	}
	defer func() {
		_, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
	}()
	u, err := url.Parse(base)
	if err != nil {
		return 0, err
	}
	u.Path = "/" + name
	s, err := postgres.Open(ctx, u.String(), 1)
	if err != nil {
		return 0, err
	}
	err = s.Migrate(ctx)
	s.Close()
	if err != nil {
		return 0, err
	}
	return f(u.String())
}

const rawSQL = `INSERT INTO events (topic, event_id, ts, source, payload)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::json[])
ON CONFLICT (topic, event_id) DO NOTHING`

// rawInsert is the baseline: the statement alone, one autocommit per batch.
func rawInsert(ctx context.Context, u string, events []event.Event, o options) (float64, error) {
	pool, err := pgxpool.New(ctx, u+"&pool_max_conns="+strconv.Itoa(o.conns))
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	return timed(events, o, func(_ int, batch []event.Event) error {
		n := len(batch)
		topic, id, source := make([]string, n), make([]string, n), make([]string, n)
		ts, payload := make([]time.Time, n), make([][]byte, n)
		for i := range batch {
			e := &batch[i]
			topic[i], id[i], source[i], ts[i], payload[i] = e.Topic, e.EventID, e.Source, e.Timestamp, e.Payload
		}
		_, err := pool.Exec(ctx, rawSQL, topic, id, ts, source, payload)
		return err
	})
}

// persist is the worker's path: each connection plays one partition.
func persist(ctx context.Context, u string, events []event.Event, o options) (float64, error) {
	s, err := postgres.Open(ctx, u, o.conns)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	next := make([]int64, o.conns)
	return timed(events, o, func(worker int, batch []event.Event) error {
		off := &process.Offset{Topic: "events", Partition: worker, From: next[worker], Next: next[worker] + int64(len(batch)),
			First: next[worker] == 0}
		_, err := s.Persist(ctx, &process.Batch{Events: batch, Dropped: map[string]int{}, Shard: worker, Offset: off})
		next[worker] = off.Next
		return err
	})
}

// timed splits events into batches, runs them on o.conns goroutines and
// returns rows per second.
func timed(events []event.Event, o options, do func(worker int, batch []event.Event) error) (float64, error) {
	var batches [][]event.Event
	for i := 0; i < len(events); i += o.batch {
		batches = append(batches, events[i:min(i+o.batch, len(events))])
	}
	work := make(chan []event.Event, len(batches))
	for _, b := range batches {
		work <- b
	}
	close(work)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	start := time.Now()
	for w := range o.conns {
		wg.Go(func() {
			for b := range work {
				if err := do(w, b); err != nil {
					mu.Lock()
					first = firstErr(first, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return float64(len(events)) / time.Since(start).Seconds(), nil
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
