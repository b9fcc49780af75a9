package e2e

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// TestEventsFreshDespiteLongTransactions: transactions left open elsewhere in
// the cluster (another database, another table of this one, a long report)
// do not hide a stored event from GET /events: once /stats counts it, the
// next read of /events returns it.
func TestEventsFreshDespiteLongTransactions(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 1})

	other := openTx(t, ctx, testdeps.NewPostgresDB(t))
	mustExec(t, ctx, other, `CREATE TABLE filler (n int)`)
	mustExec(t, ctx, other, `INSERT INTO filler VALUES (1)`)
	local := openTx(t, ctx, s.pgURL)
	mustExec(t, ctx, local, `CREATE TABLE report_state (n int)`)
	mustExec(t, ctx, local, `INSERT INTO report_state VALUES (1)`)
	report := openTx(t, ctx, s.pgURL)
	mustExec(t, ctx, report, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`)
	mustExec(t, ctx, report, `SELECT count(*) FROM events`)

	for _, id := range []string{"fresh-" + randomHex(4), "fresh-" + randomHex(4)} {
		s.publishOne(t, ctx, id)
		if !s.readAllEvents(t, ctx)["probe/"+id] {
			t.Fatalf("%s is counted in /stats but GET /events does not return it", id)
		}
	}
}

// openTx opens a transaction on a connection of its own, left open until
// the test ends.
func openTx(t *testing.T, ctx context.Context, url string) pgx.Tx {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() {
		_ = tx.Rollback(context.Background())
		_ = conn.Close(context.Background())
	})
	return tx
}

func mustExec(t *testing.T, ctx context.Context, tx pgx.Tx, q string) {
	t.Helper()
	if _, err := tx.Exec(ctx, q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}
