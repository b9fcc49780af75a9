package pebble

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// The store's key space. Each kind of record has its own one-byte prefix, so
// the random keys of the dedup index ('k') and the ordered event log ('e',
// 't') fall into separate ranges of the LSM. Flushes and compactions end
// their tables there (splitAtKinds), so the log, appended in order, never
// overlaps its older tables: compactions move it down the levels rather
// than rewrite it with the dedup keys.
//
// Strings inside keys are length-prefixed (uvarint), so no topic or event id,
// whatever bytes it holds, can make two keys collide or sort into another's
// range.
//
// In a store of layoutBuckets, the dedup keys and the topic index are split
// further, by seq, into buckets (buckets): see there.
const (
	prefixKey     = 'k' // k [bucket] topic id -> seq of the event, 0 when deleted with its key kept
	prefixEvent   = 'e' // e seq -> the event
	prefixTopic   = 't' // t [bucket] topic seq -> nothing: the events of one topic in order
	prefixCounter = 'c' // c topic -> received, unique, duplicate, deleted
	prefixKept    = 'x' // x stored-at topic id -> seq: kept keys by age, for Forget
	prefixMeta    = 'm' // m name -> value
)

// metaSeq holds the last seq handed out: a seq is never reused, even after
// the newest event is deleted, so no cursor can point at two events.
var metaSeq = []byte{prefixMeta, 's'}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendSeq(b []byte, seq uint64) []byte { return binary.BigEndian.AppendUint64(b, seq) }

// metaLayout holds the store's keyLayout (stores of the text layout, written
// before there was a choice, have none).
var metaLayout = []byte{prefixMeta, 'v'}

// keyLayout is how a store writes the event ids of its dedup keys. One store
// keeps one layout for life: a key written in one is not found in the other.
type keyLayout byte

const (
	// layoutText keeps every id as sent.
	layoutText keyLayout = 1
	// layoutPacked keeps an id in the canonical text form of a UUID (36
	// characters, lowercase) as its 16 bytes, behind tagUUID, and any other
	// id as sent, behind tagRaw when its first byte could be read as a tag.
	// Random UUIDs are the ids most publishers send, and the dedup index is
	// where an LSM spends its compactions on random keys: such a key is 20
	// bytes instead of 46.
	layoutPacked keyLayout = 2
	// layoutBuckets packs ids as layoutPacked does, and puts the dedup keys
	// and the topic index into buckets of seqs (buckets).
	layoutBuckets keyLayout = 3
)

// buckets is how many low bits of a seq a bucket spans, 0 for a store
// without buckets (a layout before layoutBuckets). A bucket's number,
// seq>>bits as 4 bytes, follows the prefix of a dedup key or topic index
// entry, so new keys, all in the newest bucket, never overlap the tables of
// older buckets: a compaction moves those down the levels and rewrites only
// the newest bucket's keys, where without buckets every compaction of
// random dedup keys (and of the topic index, one range a topic) rewrites
// every older key in the levels it joins. The price is in lookups: a key
// the filter cannot rule out is looked for in each bucket, newest first,
// until found.
type buckets uint8

// DefaultBucketBits: 262,144 seqs a bucket, about 7 MB of dedup keys.
const DefaultBucketBits = 18

// of is the bucket of seq.
func (bk buckets) of(seq uint64) uint32 { return uint32(seq >> bk) }

// dedupKey is where the dedup key k (keyLayout.dedupKey) is stored in
// bucket: k itself in a store without buckets.
func (bk buckets) dedupKey(b, k []byte, bucket uint32) []byte {
	if bk == 0 {
		return append(b, k...)
	}
	b = binary.BigEndian.AppendUint32(append(b, prefixKey), bucket)
	return append(b, k[1:]...)
}

// idKey is the dedup key (keyLayout.dedupKey) of a stored one.
func (bk buckets) idKey(b, stored []byte) []byte {
	if bk == 0 {
		return append(b, stored...)
	}
	return append(append(b, stored[0]), stored[5:]...)
}

// bucketOf is the bucket of a stored dedup key or topic index entry.
func bucketOf(stored []byte) uint32 { return binary.BigEndian.Uint32(stored[1:5]) }

const (
	tagUUID = 0x00
	tagRaw  = 0x01
)

// dedupKey is the unique key of (topic, event id): the filter's key, and
// the stored one in a store without buckets (buckets.dedupKey).
func (l keyLayout) dedupKey(b []byte, topic, id string) []byte {
	b = append(b, prefixKey)
	b = appendString(b, topic)
	if l != layoutText {
		if u, ok := packUUID(id); ok {
			return append(append(b, tagUUID), u[:]...)
		}
		if id != "" && id[0] <= tagRaw {
			b = append(b, tagRaw)
		}
	}
	return append(b, id...)
}

// packUUID returns the 16 bytes of a UUID in canonical text form:
// xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, lowercase hex digits only, so that
// each packed value stands for exactly one id.
func packUUID(id string) (u [16]byte, ok bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return u, false
	}
	digits := 0
	for i := range 36 {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue // a hyphen, checked above
		}
		d := unhex(id[i])
		if d > 0xf {
			return u, false
		}
		u[digits/2] |= d << (4 - 4*(digits%2)) // high nibble first
		digits++
	}
	return u, true
}

// unhex is the value of a lowercase hex digit, or 0xff.
func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 0xff
}

func eventKey(b []byte, seq uint64) []byte { return appendSeq(append(b, prefixEvent), seq) }

// topicPrefix starts every topic index entry of topic in bucket.
func (bk buckets) topicPrefix(b []byte, bucket uint32, topic string) []byte {
	b = append(b, prefixTopic)
	if bk != 0 {
		b = binary.BigEndian.AppendUint32(b, bucket)
	}
	return appendString(b, topic)
}

func (bk buckets) topicKey(b []byte, topic string, seq uint64) []byte {
	return appendSeq(bk.topicPrefix(b, bk.of(seq), topic), seq)
}

func counterKey(topic string) []byte { return append([]byte{prefixCounter}, topic...) }

// keptKey orders kept keys by when their event was stored. Times before
// 1970 would not sort as unsigned, but a stored-at time is always now.
func keptKey(at int64, topic, id string) []byte {
	b := appendSeq([]byte{prefixKept}, uint64(at))
	b = appendString(b, topic)
	return append(b, id...)
}

// dedupValue is the event's seq, 0 for a kept key of a deleted event.
func dedupValue(b []byte, seq uint64) []byte { return binary.AppendUvarint(b, seq) }

// parseDedupValue reads the seq; what follows it (the stored-at time of
// older stores) is not needed.
func parseDedupValue(v []byte) (seq uint64, err error) {
	seq, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, errCorrupt
	}
	return seq, nil
}

var errCorrupt = errors.New("corrupt record")

// eventValue encodes an event: topic, id, source, timestamp, stored-at, then
// the payload as received.
func eventValue(b []byte, e *event.Event, at int64) []byte {
	b = appendString(b, e.Topic)
	b = appendString(b, e.EventID)
	b = appendString(b, e.Source)
	b = binary.AppendVarint(b, e.Timestamp.UnixMicro())
	b = binary.AppendVarint(b, at)
	return append(b, e.Payload...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) string() string {
	n, k := binary.Uvarint(r.b)
	if k <= 0 || uint64(len(r.b)-k) < n {
		r.err = errCorrupt
		return ""
	}
	s := string(r.b[k : k+int(n)])
	r.b = r.b[k+int(n):]
	return s
}

func (r *reader) varint() int64 {
	v, k := binary.Varint(r.b)
	if k <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[k:]
	return v
}

// parseEvent decodes an event stored at seq; the payload is copied.
func parseEvent(seq uint64, v []byte) (event.Stored, error) {
	r := reader{b: v}
	var e event.Stored
	e.Topic = r.string()
	e.EventID = r.string()
	e.Source = r.string()
	ts := r.varint()
	at := r.varint()
	if r.err != nil {
		return event.Stored{}, fmt.Errorf("event %d: %w", seq, r.err)
	}
	e.Timestamp = time.UnixMicro(ts).UTC()
	e.ProcessedAt = time.UnixMicro(at).UTC()
	e.Payload = append([]byte(nil), r.b...)
	e.Pos.Seq = int64(seq)
	return e, nil
}

// counters is one topic's counter record.
type counters struct {
	event.Counts
	deleted int64
}

func (c *counters) value() []byte {
	b := binary.AppendVarint(nil, c.Received)
	b = binary.AppendVarint(b, c.Unique)
	b = binary.AppendVarint(b, c.Duplicates)
	return binary.AppendVarint(b, c.deleted)
}

func parseCounters(topic string, v []byte) (counters, error) {
	r := reader{b: v}
	c := counters{Counts: event.Counts{Topic: topic, Received: r.varint(), Unique: r.varint(), Duplicates: r.varint()},
		deleted: r.varint()}
	if r.err != nil {
		return counters{}, fmt.Errorf("counters of %q: %w", topic, r.err)
	}
	return c, nil
}
