package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/event-aggregator/event-aggregator/pkg/api/apitest"
	"github.com/event-aggregator/event-aggregator/pkg/config"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// partitions of each scenario's events topic (the services' default).
const partitions = 12

// stackOptions shape one scenario's stack.
type stackOptions struct {
	workers int
	// redisURL replaces the shared test Redis (a private server that the
	// scenario stops or flushes).
	redisURL string
	// postgresURL replaces a fresh database on the shared test Postgres (a
	// private server that the scenario restarts).
	postgresURL string
	// ingestEnv and queryEnv are further settings of ingest and query
	// (API keys, rate limits).
	ingestEnv, queryEnv map[string]string
	// env adds settings to every worker and the query service (TLS files,
	// session bounds).
	env map[string]string

	// workerEnv are further settings of the workers (retention).
	workerEnv map[string]string
}

// stack is one isolated distributed system: its own database, events and
// dead-letter topics, consumer group and ports, on the shared servers.
type stack struct {
	t        *testing.T
	pgURL    string
	redisURL string
	brokers  []string
	topic    string
	dlq      string
	group    string
	logDir   string
	opts     stackOptions
	env      map[string]string

	ingest  *process
	query   *process
	workers []*process

	db    *pgxpool.Pool
	kafka *kafka.Client
	http  *http.Client
}

func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	s := &stack{
		t:        t,
		pgURL:    opts.postgresURL,
		redisURL: opts.redisURL,
		brokers:  testdeps.KafkaBrokers(t),
		logDir:   logDir(t),
		http:     &http.Client{Timeout: 10 * time.Second, Transport: apitest.Transport(t, nil)}, // checked against openapi.json
		opts:     opts,
		group:    "e2e-" + randomHex(6),
		env:      opts.env,
	}
	if s.pgURL == "" {
		s.pgURL = testdeps.NewPostgresDB(t)
	}
	if s.redisURL == "" {
		s.redisURL = testdeps.RedisURL(t)
	}
	s.topic = testdeps.NewKafkaTopic(t, partitions)
	s.dlq = testdeps.NewKafkaTopic(t, 1)

	s.connect(t)
	s.migrate(t)
	addr := freeAddr(t)
	s.ingest = newProcess(t, s.logDir, "ingest", bin.ingest, s.ingestEnv(addr), addr)
	addr = freeAddr(t)
	s.query = newProcess(t, s.logDir, "query", bin.query, s.queryEnv(addr), addr)
	procs := []*process{s.ingest, s.query}
	for range max(opts.workers, 1) {
		procs = append(procs, s.newWorker(t))
	}
	for _, p := range procs {
		p.start(t)
	}
	for _, p := range procs {
		p.waitReady(t, time.Minute)
	}
	// Registered last, so it runs first: the logs of a failed scenario.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range append([]*process{s.ingest, s.query}, s.workers...) {
			t.Logf("---- %s: last lines of %s ----\n%s", p.name, p.log, tail(p.log, 40))
		}
	})
	return s
}

// migrate applies the schema once, as the Helm hook Job does.
func (s *stack) migrate(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.worker, "migrate")
	cmd.Env = s.workerEnv(freeAddr(t), "migrate")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("worker migrate: %v\n%s", err, out)
	}
}

func (s *stack) kafkaSettings() map[string]string {
	return map[string]string{
		"AGGREGATOR_KAFKA_BROKERS":   strings.Join(s.brokers, ","),
		"AGGREGATOR_KAFKA_TOPIC":     s.topic,
		"AGGREGATOR_KAFKA_DLQ_TOPIC": s.dlq,
		"AGGREGATOR_LOG_LEVEL":       "info",
	}
}

func (s *stack) ingestEnv(addr string) []string {
	m := s.kafkaSettings()
	m["AGGREGATOR_ADDR"] = addr
	maps.Copy(m, s.opts.ingestEnv)
	return serviceEnv(s.t, &config.Ingest{}, m)
}

// workerEnv is a worker's environment; its Postgres sessions carry name as
// application_name, so a test can tell them apart in pg_stat_activity.
func (s *stack) workerEnv(addr, name string) []string {
	m := s.kafkaSettings()
	m["AGGREGATOR_ADDR"] = addr
	m["AGGREGATOR_KAFKA_GROUP"] = s.group
	m["AGGREGATOR_POSTGRES_URL"] = withParam(s.t, s.pgURL, "application_name", name)
	m["AGGREGATOR_REDIS_URL"] = s.redisURL
	maps.Copy(m, s.env)
	maps.Copy(m, s.opts.workerEnv)
	return serviceEnv(s.t, &config.Worker{}, m)
}

func (s *stack) queryEnv(addr string) []string {
	m := map[string]string{
		"AGGREGATOR_ADDR":         addr,
		"AGGREGATOR_POSTGRES_URL": s.pgURL,
		"AGGREGATOR_LOG_LEVEL":    "info",
	}
	maps.Copy(m, s.opts.queryEnv)
	for k, v := range s.env {
		if !strings.HasPrefix(k, "AGGREGATOR_REDIS_") { // the query service has no Redis
			m[k] = v
		}
	}
	return serviceEnv(s.t, &config.Query{}, m)
}

// newWorker adds a worker process to the stack without starting it.
func (s *stack) newWorker(t *testing.T) *process {
	addr := freeAddr(t)
	name := "worker-" + strconv.Itoa(len(s.workers)+1)
	w := newProcess(t, s.logDir, name, bin.worker, s.workerEnv(addr, name), addr)
	s.workers = append(s.workers, w)
	return w
}

func (s *stack) ingestURL() string { return "http://" + s.ingest.addr }
func (s *stack) queryURL() string  { return "http://" + s.query.addr }

// stats is GET /stats.
type stats struct {
	Received   int64    `json:"received"`
	Unique     int64    `json:"unique_processed"`
	Duplicates int64    `json:"duplicate_dropped"`
	Topics     []string `json:"topics"`
}

// stats reads GET /stats. A 503 is the contract's answer to a passing store
// failure (a pooled connection that a restore or restart of the database
// ended is found broken on its next use): it is asked again, for at most
// 10 s, so only a lasting failure fails the test.
func (s *stack) stats(ctx context.Context) (stats, error) {
	var st stats
	err := s.readStats(ctx, &st)
	return st, err
}

// readStats decodes GET /stats into v, asking again on a 503 for at most 10 s.
func (s *stack) readStats(ctx context.Context, v any) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.statsOnce(ctx, v)
		var unavailable *statusError
		if !errors.As(err, &unavailable) || unavailable.code != http.StatusServiceUnavailable ||
			time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// statusError is an answer other than 200.
type statusError struct {
	code   int
	status string
}

func (e *statusError) Error() string { return "GET /stats: " + e.status }

func (s *stack) statsOnce(ctx context.Context, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.queryURL()+"/stats", nil)
	if err != nil {
		return err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &statusError{code: resp.StatusCode, status: resp.Status}
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// logEndOffsets returns each partition's high watermark: the offset the
// next record will get, so also the number of records ever written to a
// fresh topic.
func (s *stack) logEndOffsets(ctx context.Context, topic string, n int) (map[int]int64, error) {
	reqs := make([]kafka.OffsetRequest, n)
	for p := range n {
		reqs[p] = kafka.LastOffsetOf(p)
	}
	res, err := s.kafka.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := make(map[int]int64, n)
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("partition %d: %w", po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	if len(out) != n {
		return nil, fmt.Errorf("offsets of %d partitions, want %d", len(out), n)
	}
	return out, nil
}

// storedOffsets are the workers' consumed offsets, kept in Postgres.
func (s *stack) storedOffsets(ctx context.Context) (map[int]int64, error) {
	rows, err := s.db.Query(ctx, `SELECT partition, next FROM offsets WHERE topic = $1`, s.topic)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]int64{}
	for rows.Next() {
		var p int
		var next int64
		if err := rows.Scan(&p, &next); err != nil {
			return nil, err
		}
		out[p] = next
	}
	return out, rows.Err()
}

// waitDrained waits until the workers have stored every record of the
// events topic (each partition's stored offset is its log end) and returns
// the number of records in the topic.
func (s *stack) waitDrained(t *testing.T, ctx context.Context, timeout time.Duration) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		ends, stored map[int]int64
		lastErr      error
	)
	drained := waitFor(ctx, 200*time.Millisecond, func() bool {
		var err error
		if ends, err = s.logEndOffsets(ctx, s.topic, partitions); err != nil {
			lastErr = err
			return false
		}
		if stored, err = s.storedOffsets(ctx); err != nil {
			lastErr = err
			return false
		}
		lastErr = nil
		for p, end := range ends {
			if next, ok := stored[p]; next > end {
				t.Fatalf("partition %d: stored offset %d is past the log end %d", p, next, end)
			} else if next != end && (ok || end != 0) {
				return false
			}
		}
		return true
	})
	if !drained {
		var lag []string
		for p := range partitions {
			lag = append(lag, fmt.Sprintf("p%d %d/%d", p, stored[p], ends[p]))
		}
		t.Fatalf("the workers did not drain the topic within %v (stored/log end: %s; last error: %v)",
			timeout, strings.Join(lag, ", "), lastErr)
	}
	var total int64
	for _, end := range ends {
		total += end
	}
	return total
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// committedOffsets are the group's offsets in Kafka, which lag tools read.
func (s *stack) committedOffsets(ctx context.Context) (map[int]int64, error) {
	ps := make([]int, partitions)
	for p := range ps {
		ps[p] = p
	}
	res, err := s.kafka.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: s.group, Topics: map[string][]int{s.topic: ps}})
	if err != nil {
		return nil, err
	}
	if res.Error != nil {
		return nil, res.Error
	}
	out := map[int]int64{}
	for _, p := range res.Topics[s.topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("partition %d: %w", p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out, nil
}

// logSummary counts the warnings, errors and fencings the services logged,
// by message.
func (s *stack) logSummary(t *testing.T) {
	t.Helper()
	type key struct{ proc, level, msg string }
	n := map[key]int{}
	for _, p := range append([]*process{s.ingest, s.query}, s.workers...) {
		b, err := os.ReadFile(p.log)
		if err != nil {
			continue
		}
		kind, _, _ := strings.Cut(p.name, "-")
		for line := range strings.Lines(string(b)) {
			var l struct{ Level, Msg string }
			if json.Unmarshal([]byte(line), &l) != nil ||
				(l.Level != "WARN" && l.Level != "ERROR" && !strings.Contains(l.Msg, "fenced")) {
				continue
			}
			n[key{kind, l.Level, l.Msg}]++
		}
	}
	var lines []string
	for k, c := range n {
		lines = append(lines, fmt.Sprintf("%s %s ×%d: %s", k.proc, k.level, c, k.msg))
	}
	slices.Sort(lines)
	if len(lines) > 0 {
		t.Logf("service warnings:\n  %s", strings.Join(lines, "\n  "))
	}
}

// publishOne posts one event and waits until the workers have counted it.
func (s *stack) publishOne(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	before, err := s.stats(ctx)
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	body := fmt.Sprintf(`{"topic":"probe","event_id":%q,"timestamp":"2026-11-25T10:00:00Z","source":"e2e"}`, id)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ingestURL()+"/publish", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("POST /publish: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /publish: %s", resp.Status)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !waitFor(wctx, 100*time.Millisecond, func() bool {
		st, err := s.stats(wctx)
		return err == nil && st.Received > before.Received
	}) {
		t.Fatalf("the event %s was not counted within 30 s", id)
	}
}

// withParam returns the URL u with the query parameter k set to v.
func withParam(t testing.TB, u, k, v string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatalf("parse %s: %v", u, err)
	}
	q := parsed.Query()
	q.Set(k, v)
	parsed.RawQuery = q.Encode()
	return parsed.String()
}

// connect opens the test's own clients of the scenario's Kafka and database.
func (s *stack) connect(t *testing.T) {
	t.Helper()
	tr := &kafka.Transport{MetadataTTL: time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	s.kafka = &kafka.Client{Addr: kafka.TCP(s.brokers...), Transport: tr, Timeout: 10 * time.Second}
	db, err := pgxpool.New(context.Background(), s.pgURL)
	if err != nil {
		t.Fatalf("open the scenario's database: %v", err)
	}
	t.Cleanup(db.Close)
	s.db = db
}
