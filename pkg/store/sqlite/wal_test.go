package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
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

func TestLightLoadDecidesIdleCheckpoints(t *testing.T) {
	t.Parallel()
	var l lightLoad
	steps := []struct {
		rows, queued int
		want         bool
	}{
		{lightCheckpointRows, 0, false},     // heavy: the WAL may grow
		{lightCheckpointRows, 0, false},     // heavy
		{1, 3, false},                       // light, but batches are waiting
		{1, 0, true},                        // light, idle, and enough events since
		{lightCheckpointRows - 2, 0, false}, // heavy again
		{1, 0, false},                       // one short of lightCheckpointRows since
		{1, 0, true},                        // lightCheckpointRows
	}
	for i, st := range steps {
		if got := l.due(st.rows, st.queued); got != st.want {
			t.Fatalf("step %d (%d rows, %d queued): due %t, want %t", i, st.rows, st.queued, got, st.want)
		}
	}
}

// After heavy groups, a light one with nothing queued checkpoints the WAL.
func TestIdleCheckpoint(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	for i, n := range []int{lightCheckpointRows, lightCheckpointRows, 1} {
		if _, err := s.Persist(t.Context(), batchOf(fmt.Sprint("t", i), n, nil)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.idleCheckpoints.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no idle checkpoint after a light group")
		}
		time.Sleep(time.Millisecond) // polling a condition
	}
}
