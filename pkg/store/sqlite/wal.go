package sqlite

import "context"

// DefaultCheckpointPages is how many pages the WAL may hold before the writer
// copies them back into the database file. SQLite's own default, 1,000 pages
// (4 MiB), suits keys that arrive in order. With random keys every event
// dirties its own leaf of the unique index, so one group commit alone
// outgrows 1,000 pages: the writer then checkpoints (and fsyncs the database
// file) after nearly every commit, rewriting pages that the next commits
// change again. A larger WAL copies each such page once per checkpoint
// instead (docs/benchmarks.md, "Random ids, single events, open loop"). It
// costs disk, not memory: the WAL is read and written through the file, not
// mapped.
const DefaultCheckpointPages = 16384 // 64 MiB of 4 KiB pages

// WithCheckpointPages sets the WAL size, in pages, past which a commit
// checkpoints (SQLite's wal_autocheckpoint).
func WithCheckpointPages(pages int) Option { return func(o *options) { o.checkpointPages = pages } }

// When traffic is light the writer has time to spare, and a large WAL would
// only make the one commit that crosses DefaultCheckpointPages wait for a
// long checkpoint: single-event latency. So after a small group, with nothing
// queued, the writer checkpoints once a few commits' worth of events have
// accumulated, keeping the WAL short; under heavy batches it never does, and
// the WAL grows to DefaultCheckpointPages.
const (
	lightGroupRows      = 100 // a group of fewer events means the writer is not saturated
	lightCheckpointRows = 250 // events since the last idle checkpoint: ~1,000 pages, SQLite's own default
)

// lightLoad decides the idle checkpoints; the writer goroutine owns it.
type lightLoad struct {
	since int // events committed since the last idle checkpoint
}

// due records a committed group of rows events, with queued batches waiting,
// and tells whether to checkpoint now.
func (l *lightLoad) due(rows, queued int) bool {
	l.since += rows
	if rows >= lightGroupRows || queued > 0 || l.since < lightCheckpointRows {
		return false
	}
	l.since = 0
	return true
}

// afterCommit runs on the writer goroutine after each group of rows events.
func (s *Store) afterCommit(rows int) {
	if !s.light.due(rows, s.group.Queued()) {
		return
	}
	// PASSIVE never waits on readers. Should it fail, the next commit's
	// automatic checkpoint does the work.
	if _, err := s.w.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)"); err == nil {
		s.idleCheckpoints.Add(1)
	}
}
