package sqlite

// DefaultCheckpointPages is how many pages the WAL may hold before the writer
// copies them back into the database file. SQLite's own default, 1,000 pages
// (4 MiB), suits keys that arrive in order. With random keys every event
// dirties its own leaf of the unique index, so one group commit alone
// outgrows 1,000 pages: the writer then checkpoints (and fsyncs the database
// file) after nearly every commit, rewriting pages that the next commits
// change again. A larger WAL copies each such page once per checkpoint
// instead (docs/benchmarks.md, "Random ids"). It costs disk, not memory:
// the WAL is read and written through the file, not mapped.
const DefaultCheckpointPages = 16384 // 64 MiB of 4 KiB pages

// WithCheckpointPages sets the WAL size, in pages, past which a commit
// checkpoints (SQLite's wal_autocheckpoint).
func WithCheckpointPages(pages int) Option { return func(o *options) { o.checkpointPages = pages } }
