package testdeps

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgresURL is where scripts/deps.sh runs Postgres.
const DefaultPostgresURL = "postgres://aggregator:aggregator@127.0.0.1:5432/aggregator?sslmode=disable"

// PostgresURLEnv names the variable that points the tests at another server.
const PostgresURLEnv = "AGGREGATOR_TEST_POSTGRES_URL"

var postgresOnce struct {
	sync.Once
	url string
	err error
}

// PostgresURL returns the URL of the test Postgres server, failing the test
// when the server does not answer within a few seconds. The check runs once
// per test binary, so a missing server fails every test fast.
func PostgresURL(t testing.TB) string {
	t.Helper()
	postgresOnce.Do(func() {
		u := os.Getenv(PostgresURLEnv)
		if u == "" {
			u = DefaultPostgresURL
		}
		postgresOnce.url = u
		postgresOnce.err = waitPostgres(u, 5*time.Second)
	})
	if err := postgresOnce.err; err != nil {
		t.Fatalf("Postgres at %s is not reachable: %v\n"+
			"Start it with `scripts/deps.sh up postgres`, or set %s to a server where the role may CREATE DATABASE.",
			redact(postgresOnce.url), err, PostgresURLEnv)
	}
	return postgresOnce.url
}

// waitPostgres retries a connection until the deadline: a server that is
// just starting refuses connections for a moment.
func waitPostgres(u string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		err := pingOnce(ctx, u)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func pingOnce(ctx context.Context, u string) error {
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// NewPostgresDB creates an empty database for one test and drops it when the
// test ends. It returns the database's URL.
func NewPostgresDB(t testing.TB) string {
	t.Helper()
	base := PostgresURL(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", PostgresURLEnv, err)
	}
	name := databaseName(t.Name())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to Postgres at %s: %v", redact(base), err)
	}
	defer conn.Close(context.Background())
	ident := pgx.Identifier{name}.Sanitize()
	// template0 and UTF8: the tests store any Unicode whatever the server's
	// default template holds.
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		t.Fatalf("create test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := dropDatabase(base, ident); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})

	u.Path = "/" + name
	return u.String()
}

// dropDatabase drops a test database. Plain DROP stops autovacuum workers
// itself, which WITH (FORCE) may not do for a role without
// pg_signal_backend; FORCE ends sessions of our own role that a test left
// open. Each is tried in turn for a while.
func dropDatabase(base, ident string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for {
		_, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident)
		if err == nil {
			return nil
		}
		if _, ferr := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); ferr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// databaseName is a unique, recognisable name within Postgres's 63 bytes.
func databaseName(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	slug := b.String()
	if len(slug) > 40 {
		slug = slug[len(slug)-40:]
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return fmt.Sprintf("test_%s_%s", slug, hex.EncodeToString(rnd[:]))
}

// redact hides the password of a URL shown in a failure message.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable URL)"
	}
	return p.Redacted()
}
