package sqlite

import (
	"path/filepath"
	"testing"
)

func TestCheckpointPages(t *testing.T) {
	t.Parallel()
	if got := pragma(t, openTest(t).w, "wal_autocheckpoint"); got != DefaultCheckpointPages {
		t.Errorf("default wal_autocheckpoint = %d, want %d", got, DefaultCheckpointPages)
	}
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "events.db"), WithCheckpointPages(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := pragma(t, s.w, "wal_autocheckpoint"); got != 1000 {
		t.Errorf("wal_autocheckpoint = %d, want 1000", got)
	}
	if _, err := Open(t.Context(), filepath.Join(t.TempDir(), "events.db"), WithCheckpointPages(0)); err == nil {
		t.Error("0 checkpoint pages accepted")
	}
}

// OR IGNORE would skip a row with a NULL column as if it were a duplicate:
// a nil payload fails the batch instead, in a chunk and alone, and stores
// nothing of it.
func TestNilPayloadFailsTheBatch(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	for _, n := range []int{rowsPerInsert, 3} {
		b := batchOf("t", n, nil)
		b.Events[n-1].Payload = nil
		if _, err := s.Persist(t.Context(), b); err == nil {
			t.Errorf("batch of %d with a nil payload: stored", n)
		}
	}
	if rows, err := s.Rows(t.Context()); err != nil || rows != 0 {
		t.Errorf("%d rows stored (%v), want none", rows, err)
	}
	counts, err := s.Counts(t.Context())
	if err != nil || len(counts) != 0 {
		t.Errorf("counters %+v (%v), want none", counts, err)
	}
}
