// Package storetest is the contract every event store keeps: one suite, run
// against each implementation (SQLite, Postgres) on a fresh, empty store per
// case. The cases try to break the invariants of docs/architecture.md: stored once, the
// first copy wins, exact counters, all or nothing, and, for a store that keeps
// consumer offsets (Postgres, the workers' store), offsets fencing zombies.
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/query"
)

// Store is what the suite exercises: the write port, the read port, and the
// inspection methods every store has.
type Store interface {
	process.Store
	query.Reader
	// Rows counts the stored events.
	Rows(ctx context.Context) (int64, error)
	// Expire, Forget: retention (pkg/retention).
	Expire(ctx context.Context, topic string, cutoff time.Time, keepKeys bool, limit int) (int, error)
	Forget(ctx context.Context, cutoff time.Time, limit int) (int, error)
	// Deleted counts the events retention deleted.
	Deleted(ctx context.Context) (int64, error)
}

// OffsetStore is a Store that keeps consumer offsets: Persist records
// Batch.Offset in the batch's transaction, with the compare-and-set of
// docs/architecture.md, "Offsets", and fails with process.ErrFenced, changing
// nothing, when the stored offset is not Offset.From.
type OffsetStore interface {
	Store
	// Offsets returns the next offset to consume of each partition of topic.
	Offsets(ctx context.Context, topic string) (map[int]int64, error)
}

// Offsets says whether the store under test keeps consumer offsets.
type Offsets bool

const (
	// NoOffsets: the store has no Offsets method and refuses, changing
	// nothing, any batch that carries an Offset (SQLite, the all-in-one's).
	NoOffsets Offsets = false
	// KeepsOffsets: the store is an OffsetStore (Postgres, the workers').
	KeepsOffsets Offsets = true
)

// Subject is one fresh, empty, migrated store under test.
type Subject struct {
	Store Store
	// TimeResolution is what the store keeps of a timestamp: times come back
	// truncated to a multiple of it (SQLite: 1ns; Postgres: 1µs).
	TimeResolution time.Duration
	// Stall, when set, makes a Persist that writes the counters of (topic,
	// shard) wait inside its transaction, after its rows are inserted, until
	// release is called; stalled reports whether one waits there now. A store
	// with a single writer leaves it nil: no Persist is in flight while
	// another commits.
	Stall func(t *testing.T, topic string, shard int) (stalled func() bool, release func())
}

type testCase struct {
	name string
	run  func(t *testing.T, s Subject)
}

// Run runs the contract suite: the cases every store passes, then those of
// its kind, offsets says which. open returns a new empty store for each case
// and registers its cleanup on t.
func Run(t *testing.T, offsets Offsets, open func(t *testing.T) Subject) {
	cases := []testCase{
		{"NewThenDuplicate", testNewThenDuplicate},
		{"FirstCopyWins", testFirstCopyWins},
		{"Dropped", testDropped},
		{"ConcurrentOverlapping", testConcurrentOverlapping},
		{"BytewiseKeys", testBytewiseKeys},
		{"HostileStrings", testHostileStrings},
		{"Timestamps", testTimestamps},
		{"Pagination", testPagination},
		{"CommitOrder", testCommitOrder},
		{"LargeBatch", testLargeBatch},
		{"EmptyBatches", testEmptyBatches},
		{"CancelledBefore", testCancelledBefore},
		{"CancelledDuring", testCancelledDuring},
		{"Expire", testExpire},
		{"ExpireWithoutKeys", testExpireWithoutKeys},
		{"ExpireCursor", testExpireCursor},
		{"ExpireWhilePersisting", testExpireWhilePersisting},
	}
	if offsets == KeepsOffsets {
		cases = append(cases,
			testCase{"Offsets", testOffsets},
			testCase{"OffsetRace", testOffsetRace},
			testCase{"EmptyBatchOffsets", testEmptyBatchOffsets},
		)
	} else {
		cases = append(cases, testCase{"RefusesOffsets", testRefusesOffsets})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			if s.TimeResolution <= 0 {
				t.Fatal("Subject.TimeResolution must be set")
			}
			// The cases of every store check the offsets of an OffsetStore
			// too, so a store must be one exactly when it says so.
			if _, ok := s.Store.(OffsetStore); ok != bool(offsets) {
				t.Fatalf("the store %T says KeepsOffsets=%v but implements OffsetStore=%v", s.Store, bool(offsets), ok)
			}
			c.run(t, s)
			if !t.Failed() {
				checkInvariants(t, s.Store)
			}
		})
	}
}

// checkInvariants asserts what holds at every instant: received == unique +
// duplicates per topic, unique == stored rows + rows retention deleted,
// topics sorted byte-wise, and the pages of Events hold every row once.
func checkInvariants(t *testing.T, s Store) {
	t.Helper()
	ctx := context.Background()
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	var unique int64
	for i, c := range counts {
		if c.Received != c.Unique+c.Duplicates {
			t.Errorf("topic %q: received %d != unique %d + duplicates %d", c.Topic, c.Received, c.Unique, c.Duplicates)
		}
		if c.Unique < 0 || c.Duplicates < 0 {
			t.Errorf("topic %q: negative counter %+v", c.Topic, c)
		}
		if i > 0 && counts[i-1].Topic >= c.Topic {
			t.Errorf("Counts not sorted byte-wise with distinct topics: %q then %q", counts[i-1].Topic, c.Topic)
		}
		unique += c.Unique
	}
	rows, err := s.Rows(ctx)
	if err != nil {
		t.Fatalf("Rows: %v", err)
	}
	deleted, err := s.Deleted(ctx)
	if err != nil {
		t.Fatalf("Deleted: %v", err)
	}
	if unique != rows+deleted {
		t.Errorf("unique_processed %d != stored rows %d + deleted %d", unique, rows, deleted)
	}
	if all := readAll(t, s, "", 1000); int64(len(all)) != rows {
		t.Errorf("Events pages hold %d events, Rows says %d", len(all), rows)
	}
}

// state is everything a store shows, to prove a failed Persist changed
// nothing.
type state struct {
	rows    int64
	counts  string
	offsets string
	events  int
}

func snapshot(t *testing.T, s Store) state {
	t.Helper()
	ctx := context.Background()
	var st state
	var err error
	if st.rows, err = s.Rows(ctx); err != nil {
		t.Fatalf("Rows: %v", err)
	}
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	st.counts = fmt.Sprint(counts)
	st.events = len(readAll(t, s, "", 1000))
	return st
}

// offsetSnapshot is snapshot with the offsets of the given topics.
func offsetSnapshot(t *testing.T, s OffsetStore, topics ...string) state {
	t.Helper()
	st := snapshot(t, s)
	for _, topic := range topics {
		st.offsets += fmt.Sprint(topic, offsets(t, s, topic)) // fmt sorts map keys
	}
	return st
}
