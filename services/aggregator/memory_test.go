package main

import (
	"runtime/debug"
	"testing"
)

// The Go heap gets the configured soft limit unless GOMEMLIMIT is set, in
// which case the operator's limit stands.
func TestHeapLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })

	t.Setenv("GOMEMLIMIT", "")
	_, stop := startInProcess(t, t.TempDir(), "--store=sqlite", "--heap-limit-mb", "100")
	stop()
	if got := debug.SetMemoryLimit(-1); got != 100<<20 {
		t.Fatalf("memory limit %d on SQLite, want %d", got, 100<<20)
	}
	// A static build keeps Pebble's cache on the Go heap: the limit has room
	// for it; with cgo the cache is outside it, and the limit is the heap's
	// alone. A new data dir gets Pebble by default.
	_, stop = startInProcess(t, t.TempDir(), "--heap-limit-mb", "100", "--pebble-cache-mb", "40")
	stop()
	want := int64(100 << 20)
	if pebbleCacheOnHeap {
		want += 40 << 20
	}
	if got := debug.SetMemoryLimit(-1); got != want {
		t.Fatalf("memory limit %d on Pebble, want %d", got, want)
	}

	debug.SetMemoryLimit(before)
	t.Setenv("GOMEMLIMIT", "300MiB")
	_, stop = startInProcess(t, t.TempDir(), "--heap-limit-mb", "100")
	stop()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("memory limit %d with GOMEMLIMIT set, want it left at %d", got, before)
	}
}
