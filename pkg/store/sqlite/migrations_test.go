package sqlite

import (
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/pressly/goose/v3"
)

// TestMigrationDropsOffsets: a database from before 00003_drop_offsets, with
// rows in its offsets table, opens without the table and keeps its events.
func TestMigrationDropsOffsets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, mustSub(migrations, "migrations"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `INSERT INTO offsets (topic, partition, next) VALUES ('events', 0, 5)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `INSERT INTO events (topic, event_id, ts, source, payload, processed_at)
		VALUES ('t', '1', 0, 's', '{}', 0)`); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var tables int
	if err := s.r.QueryRowContext(t.Context(),
		`SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'offsets'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("the offsets table is still there after the migrations")
	}
	if rows, err := s.Rows(t.Context()); err != nil || rows != 1 {
		t.Errorf("Rows = %d, %v; want the 1 event stored before the migration", rows, err)
	}
}
