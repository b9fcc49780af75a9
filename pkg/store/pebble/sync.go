package pebble

import (
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// osOnlyWAL is the file system of the "normal" sync mode: a commit's
// write-ahead log bytes are written to the operating system before the
// commit returns, but not flushed to the disk. A commit then survives any
// crash of the process (kill -9), not a power loss: SQLite's
// synchronous=NORMAL, the all-in-one's default. Tables and the manifest are
// still synced, so a power loss loses recent commits, never the structure.
type osOnlyWAL struct{ vfs.FS }

func (fs osOnlyWAL) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return unsynced(name, f, err)
}

func (fs osOnlyWAL) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return unsynced(newname, f, err)
}

func (fs osOnlyWAL) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return unsynced(name, f, err)
}

// unsynced wraps a write-ahead log file (Pebble names them *.log).
func unsynced(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return walFile{f}, nil
}

// walFile writes through to the operating system and skips the disk flush.
type walFile struct{ vfs.File }

func (walFile) Sync() error                { return nil }
func (walFile) SyncData() error            { return nil }
func (walFile) SyncTo(int64) (bool, error) { return true, nil }
func (walFile) Fd() uintptr                { return vfs.InvalidFd } // no flush through the raw descriptor either
