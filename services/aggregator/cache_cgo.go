//go:build cgo

package main

// pebbleCacheOnHeap: with cgo, Pebble allocates its block cache outside the
// Go heap.
const pebbleCacheOnHeap = false
