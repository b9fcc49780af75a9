package e2e

import (
	"context"
	"github.com/redis/go-redis/v9"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/config"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// tlsEndpoints are the TLS URLs and CA files of the test Postgres and Redis
// (scripts/deps/postgres.sh and redis.sh env).
type tlsEndpoints struct {
	postgresURL, postgresCA string
	redisURL, redisCA       string
}

func testTLSEndpoints(t *testing.T) tlsEndpoints {
	t.Helper()
	e := tlsEndpoints{
		postgresURL: os.Getenv("AGGREGATOR_TEST_POSTGRES_TLS_URL"),
		postgresCA:  os.Getenv("AGGREGATOR_TEST_POSTGRES_TLS_CA_FILE"),
		redisURL:    os.Getenv("AGGREGATOR_TEST_REDIS_TLS_URL"),
		redisCA:     os.Getenv("AGGREGATOR_TEST_REDIS_TLS_CA_FILE"),
	}
	if e.postgresURL == "" || e.postgresCA == "" || e.redisURL == "" || e.redisCA == "" {
		t.Fatal("AGGREGATOR_TEST_{POSTGRES,REDIS}_TLS_{URL,CA_FILE} are not all set: " +
			"eval \"$(scripts/deps.sh env)\" (scripts/test.sh does)")
	}
	return e
}

// withDatabase points a Postgres URL at the database of dbURL and adds the
// query parameters in set.
func withDatabase(t *testing.T, base, dbURL string, set map[string]string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	db, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = db.Path
	q := u.Query()
	for k, v := range set {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func withQueryParam(t *testing.T, raw, key, value string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestTLS: the whole pipeline with Postgres over sslmode=verify-full and
// Redis over rediss:// with the CA, ending exact. The servers show that the
// services' sessions were encrypted (pg_stat_ssl) and that their Redis
// connections came in on the TLS port, which refuses plaintext. A CA that
// did not sign the server gives one clear log line.
func TestTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	e := testTLSEndpoints(t)
	tag := "e2e-tls-" + randomHex(4)
	db := testdeps.NewPostgresDB(t)
	// The services' sessions are named, to tell them from the test's own.
	servicePG := withDatabase(t, e.postgresURL, db, map[string]string{"application_name": tag})
	redisURL := withQueryParam(t, e.redisURL, "client_name", tag)
	s := newStack(t, stackOptions{
		workers:     2,
		postgresURL: withDatabase(t, e.postgresURL, db, nil),
		redisURL:    redisURL,
		env: map[string]string{
			"AGGREGATOR_POSTGRES_URL":      servicePG,
			"AGGREGATOR_REDIS_TLS_CA_FILE": e.redisCA,
		},
	})
	rep := s.mustPublish(t, ctx, "--events", "20000", "--duplicates", "0.3", "--topics", "5",
		"--batch", "500", "--concurrency", "4", "--settle-timeout", "90s")
	s.checkExact(t, ctx, rep, 0)

	// Postgres: every session of the workers and the query service is
	// encrypted; both kinds of service hold at least one.
	var sessions, encrypted int
	err := s.db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE s.ssl)
		FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
		WHERE a.application_name = $1`, tag).Scan(&sessions, &encrypted)
	if err != nil {
		t.Fatal(err)
	}
	if sessions < 3 || encrypted != sessions {
		t.Fatalf("services' Postgres sessions: %d, encrypted %d; want at least 3 (2 workers, query), all encrypted",
			sessions, encrypted)
	}
	t.Logf("%d Postgres sessions of the services, all encrypted", sessions)

	// Redis: the workers' connections came in on the TLS port...
	tlsPort := mustURL(t, e.redisURL).Port()
	plain := redis.NewClient(mustRedisOptions(t, testdeps.RedisURL(t)))
	defer plain.Close()
	list, err := plain.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	var named, onTLS int
	for line := range strings.Lines(list) {
		if !strings.Contains(line, " name="+tag+" ") {
			continue
		}
		named++
		if strings.Contains(line, " laddr=") && strings.Contains(line, ":"+tlsPort+" ") {
			onTLS++
		}
	}
	if named < 2 || onTLS != named {
		t.Fatalf("workers' Redis connections: %d, on the TLS port %s: %d; want at least 2, all on it\n%s",
			named, tlsPort, onTLS, list)
	}
	// ... which takes no plaintext, and they never fell back to the store alone.
	po := mustRedisOptions(t, e.redisURL)
	po.TLSConfig = nil
	plainOnTLS := redis.NewClient(po)
	defer plainOnTLS.Close()
	if err := plainOnTLS.Ping(ctx).Err(); err == nil {
		t.Fatalf("a plaintext PING on the TLS port %s succeeded", tlsPort)
	}
	for _, w := range s.workers {
		if n := countInLog(w.log, "redis unreachable") + countInLog(w.log, "redis not reachable"); n != 0 {
			t.Errorf("%s lost Redis %d times over TLS", w.name, n)
		}
	}

	// A CA that did not sign the server: one clear line in each log.
	other := testdeps.OtherCAFile(t)
	wrongPG := withDatabase(t, e.postgresURL, db, map[string]string{"sslrootcert": other})
	addr := freeAddr(t)
	q := newProcess(t, s.logDir, "query-wrong-ca", bin.query, serviceEnv(t, &config.Query{}, map[string]string{
		"AGGREGATOR_ADDR":         addr,
		"AGGREGATOR_POSTGRES_URL": wrongPG,
	}), addr)
	q.start(t)
	addr = freeAddr(t)
	env := s.workerEnv(addr, "worker-wrong-ca")
	env = append(env, "AGGREGATOR_REDIS_TLS_CA_FILE="+other) // the last value wins
	w := newProcess(t, s.logDir, "worker-wrong-ca", bin.worker, env, addr)
	w.start(t)
	const unknownCA = "certificate signed by unknown authority"
	for _, p := range []*process{q, w} {
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		if !waitFor(wctx, 100*time.Millisecond, func() bool { return firstLineWith(p.log, unknownCA) != "" }) {
			t.Errorf("%s logged no %q within 30 s; log:\n%s", p.name, unknownCA, tail(p.log, 20))
		}
		wcancel()
	}
	t.Logf("query with a wrong Postgres CA:\n%s", firstLineWith(q.log, unknownCA))
	t.Logf("worker with a wrong Redis CA:\n%s", firstLineWith(w.log, unknownCA))
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func mustRedisOptions(t *testing.T, raw string) *redis.Options {
	t.Helper()
	o, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	o.MaxRetries = -1
	o.DialTimeout = time.Second
	o.ReadTimeout = time.Second
	return o
}

// firstLineWith returns the first line of a log file that contains s, or "".
func firstLineWith(path, s string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}
