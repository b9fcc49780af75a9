package postgres_test

import (
	"testing"

	"github.com/event-aggregator/event-aggregator/pkg/store/postgres"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// TestIdentity: stable for one database across opens and migrations,
// different for another database.
func TestIdentity(t *testing.T) {
	id := func(url string) string {
		s, err := postgres.Open(t.Context(), url, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		v, err := s.ID(t.Context())
		if err != nil || v == "" {
			t.Fatalf("ID: %q %v", v, err)
		}
		return v
	}
	a := testdeps.NewPostgresDB(t)
	if first, again := id(a), id(a); first != again {
		t.Errorf("identity changed between opens: %s, %s", first, again)
	}
	if id(a) == id(testdeps.NewPostgresDB(t)) {
		t.Error("two databases share an identity")
	}
}
