package postgres_test

import (
	"context"
	"testing"
)

// TestSizeBytes: the size of the store's own database, as Postgres counts it;
// a fresh migrated database is several pages.
func TestSizeBytes(t *testing.T) {
	s := open(t)
	n, err := s.SizeBytes(context.Background())
	if err != nil || n < 8192 {
		t.Fatalf("size %d, %v", n, err)
	}
}
