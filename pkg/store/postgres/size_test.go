package postgres_test

import (
	"context"
	"testing"
)

// TestSize: the size of the store's own database, as Postgres counts it; a
// fresh migrated database is several pages and holds no events.
func TestSize(t *testing.T) {
	s := open(t)
	events, n, err := s.Size(context.Background())
	if err != nil || n < 8192 || events != 0 {
		t.Fatalf("size %d events, %d bytes, %v", events, n, err)
	}
}
