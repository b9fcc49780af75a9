//go:build !cgo

package main

// pebbleCacheOnHeap: without cgo (the images' static build), Pebble
// allocates its block cache on the Go heap.
const pebbleCacheOnHeap = true
