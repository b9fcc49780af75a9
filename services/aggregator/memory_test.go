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
	_, stop := startInProcess(t, t.TempDir(), "--heap-limit-mb", "100")
	stop()
	if got := debug.SetMemoryLimit(-1); got != 100<<20 {
		t.Fatalf("memory limit %d, want %d", got, 100<<20)
	}

	debug.SetMemoryLimit(before)
	t.Setenv("GOMEMLIMIT", "300MiB")
	_, stop = startInProcess(t, t.TempDir(), "--heap-limit-mb", "100")
	stop()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("memory limit %d with GOMEMLIMIT set, want it left at %d", got, before)
	}
}
