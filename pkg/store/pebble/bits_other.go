//go:build !unix

package pebble

// allocBits allocates n zeroed words on the Go heap, where mapping memory
// outside it is not portable.
func allocBits(n uint) (bits []uint64, free func(), err error) {
	return make([]uint64, n), func() {}, nil
}
