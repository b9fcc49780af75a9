package pebble_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/store/pebble"
)

// countingFS counts the disk flushes asked of write-ahead log files.
type countingFS struct {
	vfs.FS
	walSyncs *atomic.Int64
}

func (fs countingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return countingFile{f, fs.walSyncs}, nil
}

func (fs countingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs countingFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

type countingFile struct {
	vfs.File
	n *atomic.Int64
}

func (f countingFile) Sync() error     { f.n.Add(1); return f.File.Sync() }
func (f countingFile) SyncData() error { f.n.Add(1); return f.File.SyncData() }
func (f countingFile) SyncTo(l int64) (bool, error) {
	f.n.Add(1)
	return f.File.SyncTo(l)
}

// TestSyncModes: in "full" mode every commit flushes the write-ahead log to
// the disk; in "normal" mode none does, and the commit is still in the log
// (a reopened store has it).
func TestSyncModes(t *testing.T) {
	for _, c := range []struct {
		mode      string
		wantSyncs bool
	}{{"full", true}, {"normal", false}} {
		t.Run(c.mode, func(t *testing.T) {
			mem := vfs.NewMem()
			var syncs atomic.Int64
			fs := countingFS{mem, &syncs}
			ctx := context.Background()
			s, err := pebble.Open(ctx, "db", pebble.WithFS(fs), pebble.WithSync(c.mode))
			if err != nil {
				t.Fatal(err)
			}
			before := syncs.Load()
			b := &process.Batch{Events: []event.Event{{Topic: "t", EventID: "1", Source: "s",
				Timestamp: time.Unix(0, 0).UTC(), Payload: []byte(`{}`)}}}
			if _, err := s.Persist(ctx, b); err != nil {
				t.Fatal(err)
			}
			if got := syncs.Load() - before; (got > 0) != c.wantSyncs {
				t.Fatalf("%d log flushes for one commit, want them: %v", got, c.wantSyncs)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, err = pebble.Open(ctx, "db", pebble.WithFS(fs), pebble.WithSync(c.mode))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if n, err := s.Rows(ctx); err != nil || n != 1 {
				t.Fatalf("after reopening: %d events, %v; want 1", n, err)
			}
		})
	}
}
