package postgres

import (
	"context"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

func TestSessionParams(t *testing.T) {
	got := Session{StatementTimeout: 30 * time.Second, LockTimeout: 500 * time.Microsecond}.Params()
	want := map[string]string{"statement_timeout": "30000", "lock_timeout": "1"}
	if !maps.Equal(got, want) {
		t.Fatalf("Params() = %v; want %v (zero left out, below 1 ms rounded up to 1 ms)", got, want)
	}
	if got := (Session{}).Params(); len(got) != 0 {
		t.Fatalf("zero Session sets %v", got)
	}
}

// TestSessionBounds: every connection of the pool, not only the first, has
// the bounds, and the server enforces each of them.
func TestSessionBounds(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// A URL parameter of the same name is replaced by the setting.
	url := testdeps.NewPostgresDB(t) + "&statement_timeout=0"
	s, err := Open(ctx, url, 3, WithSession(Session{
		StatementTimeout:  1500 * time.Millisecond,
		LockTimeout:       200 * time.Millisecond,
		IdleInTransaction: 700 * time.Millisecond,
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var conns []*pgxpool.Conn
	for range 3 {
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release() // before Close, which waits for borrowed connections
		conns = append(conns, c)
	}
	for i, c := range conns {
		for name, want := range map[string]string{
			"statement_timeout":                   "1500ms",
			"lock_timeout":                        "200ms",
			"idle_in_transaction_session_timeout": "700ms",
		} {
			var got string
			if err := c.QueryRow(ctx, "SHOW "+name).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("connection %d: SHOW %s = %s; want %s", i, name, got, want)
			}
		}
	}
	holder, waiter, idle := conns[0], conns[1], conns[2]

	// statement_timeout: the server cancels a long statement.
	_, err = waiter.Exec(ctx, "SELECT pg_sleep(5)")
	wantCode(t, "a 5 s statement", err, "57014") // query_canceled

	// lock_timeout: a statement waiting for a held lock fails.
	if _, err := holder.Exec(ctx, "CREATE TABLE held (x int)"); err != nil {
		t.Fatal(err)
	}
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE held IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	_, err = waiter.Exec(ctx, "SELECT count(*) FROM held")
	wantCode(t, "a wait on a held lock", err, "55P03") // lock_not_available
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// idle_in_transaction_session_timeout: the server ends a session that
	// holds a transaction open without using it, and its locks go with it.
	var pid uint32
	itx, err := idle.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := itx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if !waitUntil(ctx, func() bool {
		var n int
		err := waiter.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n)
		return err == nil && n == 0
	}) {
		t.Fatalf("the session idle in transaction (pid %d) was not ended", pid)
	}
	_, err = itx.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("a statement on the ended session succeeded")
	}
}

func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Fatalf("%s: err %v; want SQLSTATE %s", what, err, code)
	}
}

// waitUntil polls cond every 50 ms until it holds or ctx ends.
func waitUntil(ctx context.Context, cond func() bool) bool {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}
