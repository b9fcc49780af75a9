//go:build unix

package pebble

import (
	"fmt"
	"syscall"
	"unsafe"
)

// allocBits maps n zeroed words outside the Go heap; free unmaps them.
func allocBits(n uint) (bits []uint64, free func(), err error) {
	b, err := syscall.Mmap(-1, 0, int(8*max(n, 1)), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, nil, fmt.Errorf("map %d words: %w", n, err)
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), n), func() { _ = syscall.Munmap(b) }, nil
}
