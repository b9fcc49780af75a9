package postgres

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// tlsURL is the TLS URL scripts/deps/postgres.sh prints
// (sslmode=verify-full against its CA), pointed at the database of dbURL.
func tlsURL(t *testing.T, dbURL string) string {
	t.Helper()
	raw := os.Getenv("AGGREGATOR_TEST_POSTGRES_TLS_URL")
	if raw == "" {
		t.Fatal("AGGREGATOR_TEST_POSTGRES_TLS_URL is not set: eval \"$(scripts/deps.sh env)\" (scripts/test.sh does)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("AGGREGATOR_TEST_POSTGRES_TLS_URL: %v", err)
	}
	db, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = db.Path
	return u.String()
}

// TestTLSVerifyFull: with sslmode=verify-full the store's sessions are
// encrypted and the server's certificate is checked against the CA; a
// server signed by another CA is refused with a message that says so.
func TestTLSVerifyFull(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	u := tlsURL(t, testdeps.NewPostgresDB(t))
	s, err := Open(ctx, u, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate over TLS: %v", err)
	}
	var ssl bool
	var version string
	err = s.pool.QueryRow(ctx, "SELECT ssl, coalesce(version, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()").
		Scan(&ssl, &version)
	if err != nil {
		t.Fatal(err)
	}
	if !ssl {
		t.Fatal("pg_stat_ssl: the session is not encrypted")
	}
	t.Logf("session encrypted with %s", version)

	wrong, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := wrong.Query()
	q.Set("sslrootcert", testdeps.OtherCAFile(t))
	wrong.RawQuery = q.Encode()
	bad, err := Open(ctx, wrong.String(), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	err = bad.Ping(ctx)
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("ping with a CA that did not sign the server: %v; want an unknown-authority error", err)
	}
	t.Logf("wrong CA: %v", err)
}
