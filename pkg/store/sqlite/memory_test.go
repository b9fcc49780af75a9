package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// pragma reads an integer pragma on a connection of db.
func pragma(t *testing.T, db *sql.DB, name string) int64 {
	t.Helper()
	var v int64
	if err := db.QueryRowContext(context.Background(), "PRAGMA "+name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

// The memory a store may hold is what its settings say, on the writer and
// on every reader: the defaults keep the all-in-one small at any store size.
func TestMemorySettings(t *testing.T) {
	for name, tc := range map[string]struct {
		opts            []Option
		writerKiB, mmap int64
	}{
		"defaults":   {nil, DefaultCacheBytes >> 10, 0},
		"configured": {[]Option{WithCache(256 << 20), WithMmap(64 << 20)}, 256 << 10, 64 << 20},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Open(context.Background(), filepath.Join(t.TempDir(), "events.db"), tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// A negative cache_size is a size in KiB.
			if got := pragma(t, s.w, "cache_size"); got != -tc.writerKiB {
				t.Errorf("writer cache_size = %d, want %d", got, -tc.writerKiB)
			}
			if got := pragma(t, s.r, "cache_size"); got != -readerCacheBytes>>10 {
				t.Errorf("reader cache_size = %d, want %d", got, -readerCacheBytes>>10)
			}
			for db, who := range map[*sql.DB]string{s.w: "writer", s.r: "reader"} {
				if got := pragma(t, db, "mmap_size"); got != tc.mmap {
					t.Errorf("%s mmap_size = %d, want %d", who, got, tc.mmap)
				}
			}
		})
	}
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "events.db"), WithCache(-1)); err == nil {
		t.Error("a negative cache was accepted")
	}
}
