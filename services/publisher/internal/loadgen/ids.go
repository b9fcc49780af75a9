package loadgen

import (
	"fmt"
	"hash/fnv"
	"strconv"
)

// Event id modes.
const (
	IDsSequential = "sequential" // <run-id>-<n>: arrive almost in key order
	IDsUUID       = "uuid"       // random UUIDv4, as real publishers send
)

// uuidGen derives event n's UUIDv4 from the run's seed and id, so that every
// copy of an event carries the same id and no id list is held in memory.
type uuidGen struct {
	hi, lo uint64 // keys of the two halves
}

func newUUIDGen(seed uint64, runID string) uuidGen {
	h := fnv.New64a()
	_, _ = h.Write([]byte(runID)) // never fails
	k := h.Sum64() ^ seed
	return uuidGen{hi: mix64(k ^ 0x6a09e667f3bcc909), lo: mix64(k ^ 0xbb67ae8584caa73b)}
}

// mask62 is the 62 bits of the low half a UUIDv4 leaves free after the variant.
const mask62 = 1<<62 - 1

// bits returns the 60 free bits of the high half and the 62 of the low half of
// event n's id. The low half is a permutation of n on 62 bits (adding a key,
// xor-shifts and odd multiplications are each invertible there), so the ids of
// one run are distinct by construction; the high half only adds randomness.
func (g uuidGen) bits(n uint64) (hi, lo uint64) {
	x := (n + g.lo) & mask62
	x ^= x >> 31
	x = (x * 0xbf58476d1ce4e5b9) & mask62
	x ^= x >> 29
	x = (x * 0x94d049bb133111eb) & mask62
	x ^= x >> 32
	return mix64(n ^ g.hi), x
}

// mix64 is the splitmix64 finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// appendID appends event n's UUID in its canonical 8-4-4-4-12 form.
func (g uuidGen) appendID(b []byte, n uint64) []byte {
	hi, lo := g.bits(n)
	var u [16]byte
	for i := range 8 {
		u[i] = byte(hi >> (56 - 8*i))
		u[8+i] = byte(lo >> (56 - 8*i))
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	// The variant takes the low half's top two bits, which the 62-bit
	// permutation leaves zero.
	u[8] = u[8]&0x3f | 0x80
	const hexDigits = "0123456789abcdef"
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&0x0f])
	}
	return b
}

// checkIDs validates the id mode.
func checkIDs(mode string) error {
	switch mode {
	case "", IDsSequential, IDsUUID:
		return nil
	}
	return fmt.Errorf("ids %q: want %s or %s", mode, IDsSequential, IDsUUID)
}

// idWriter appends an event's id: sequential or UUID.
type idWriter struct {
	prefix string // sequential: the JSON-escaped run id and "-"
	uuid   *uuidGen
}

func (w idWriter) append(b []byte, n int32) []byte {
	if w.uuid != nil {
		return w.uuid.appendID(b, uint64(n))
	}
	b = append(b, w.prefix...)
	return strconv.AppendInt(b, int64(n), 10)
}
