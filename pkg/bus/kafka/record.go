package kafka

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// recordLimits decode one event per record. The payload size was checked at
// ingest against the configured limit; the broker's message size bounds it
// here, so a worker with other limits never dead-letters an accepted event.
var recordLimits = event.Limits{MaxEvents: 1}

// Key is the record key of e. Records with the same key land on the same
// partition, so copies of one event are processed in order.
func Key(e *event.Event) []byte {
	return []byte(e.Topic + "/" + e.EventID)
}

// Encode renders e as a record value: the event's JSON object, the same shape
// a publisher posts. It is written by hand because encoding/json re-validates
// the raw payload, which made it the producer's largest cost; the payload is
// copied as it is and must be valid JSON, as event.Decode guarantees.
func Encode(e *event.Event) ([]byte, error) {
	b := make([]byte, 0, 96+len(e.Topic)+len(e.EventID)+len(e.Source)+len(e.Payload))
	b = append(b, `{"topic":`...)
	b = appendString(b, e.Topic)
	b = append(b, `,"event_id":`...)
	b = appendString(b, e.EventID)
	b = append(b, `,"timestamp":"`...)
	b = e.Timestamp.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","source":`...)
	b = appendString(b, e.Source)
	b = append(b, `,"payload":`...)
	if len(e.Payload) == 0 {
		b = append(b, `{}`...)
	} else {
		b = append(b, e.Payload...)
	}
	return append(b, '}'), nil
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// errNotObject rejects values that event.Decode would take as a body of many
// events (an array); a record carries exactly one event object.
var errNotObject = errors.New("record value is not a JSON object")

// Decode reads a record value with the API's validation rules. An error means
// the record is poison: it can never become a valid event.
func Decode(value []byte) (event.Event, error) {
	if len(value) == 0 || value[firstNonSpace(value)] != '{' {
		return event.Event{}, errNotObject
	}
	evs, err := event.Decode(value, event.JSON, recordLimits)
	if err != nil {
		return event.Event{}, fmt.Errorf("decode record: %w", err)
	}
	if len(evs) != 1 {
		return event.Event{}, fmt.Errorf("decode record: %d events, want 1", len(evs))
	}
	return evs[0], nil
}

func firstNonSpace(b []byte) int {
	for i, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return i
		}
	}
	return len(b) - 1
}

// Headers of a dead-lettered record: why it was refused and where it was.
const (
	HeaderDLQReason    = "x-dlq-reason"
	HeaderDLQTopic     = "x-dlq-topic"
	HeaderDLQPartition = "x-dlq-partition"
	HeaderDLQOffset    = "x-dlq-offset"
	// HeaderDLQSize is set on a stub only: the size in bytes (key, value
	// and headers) of the dead-letter record the topic refused.
	HeaderDLQSize = "x-dlq-size"
)

// maxReasonBytes keeps a dead-letter reason readable.
const maxReasonBytes = 1024

// A stub keeps at most this much of the refused record's value and key:
// enough to recognise it, small enough for any dead-letter topic.
const (
	maxStubValue = 64 << 10
	maxStubKey   = 1 << 10
)

// deadLetter is the record m becomes in the dead-letter topic: the same key,
// value and headers, plus the reason and the original position.
func deadLetter(m *kafka.Message, reason error) kafka.Message {
	h := make([]kafka.Header, 0, len(m.Headers)+4)
	h = append(h, m.Headers...)
	h = append(h,
		kafka.Header{Key: HeaderDLQReason, Value: []byte(boundReason(reason.Error()))},
		kafka.Header{Key: HeaderDLQTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: HeaderDLQPartition, Value: strconv.AppendInt(nil, int64(m.Partition), 10)},
		kafka.Header{Key: HeaderDLQOffset, Value: strconv.AppendInt(nil, m.Offset, 10)},
	)
	return kafka.Message{Key: m.Key, Value: m.Value, Headers: h}
}

// stub is what dead-letter record d becomes when the dead-letter topic
// refuses it for good (too large, say): the reason (saying so, with d's
// size), the position headers, and at most keep bytes of its value. Its
// other headers go: they may be what made it too large.
func stub(d *kafka.Message, refused error, keep int) kafka.Message {
	size := recordSize(d)
	value := d.Value[:min(len(d.Value), keep)]
	refused = firstWriteError(refused)
	what := fmt.Sprintf("refused by the dead-letter topic (%v)", refused)
	if errors.Is(refused, kafka.MessageSizeTooLarge) || errors.Is(refused, kafka.RecordListTooLarge) {
		what = "too large for the dead-letter topic"
	}
	why := fmt.Sprintf("record of %d bytes %s; value cut from %d to %d bytes; reason: %s",
		size, what, len(d.Value), len(value), headerValue(d.Headers, HeaderDLQReason))
	return kafka.Message{
		Key:   d.Key[:min(len(d.Key), keep, maxStubKey)],
		Value: value,
		Headers: []kafka.Header{
			{Key: HeaderDLQReason, Value: []byte(boundReason(why))},
			{Key: HeaderDLQTopic, Value: []byte(headerValue(d.Headers, HeaderDLQTopic))},
			{Key: HeaderDLQPartition, Value: []byte(headerValue(d.Headers, HeaderDLQPartition))},
			{Key: HeaderDLQOffset, Value: []byte(headerValue(d.Headers, HeaderDLQOffset))},
			{Key: HeaderDLQSize, Value: strconv.AppendInt(nil, int64(size), 10)},
		},
	}
}

func boundReason(why string) string {
	if len(why) > maxReasonBytes {
		why = strings.ToValidUTF8(why[:maxReasonBytes], "")
	}
	return why
}

// recordSize is the key, value and header bytes of m.
func recordSize(m *kafka.Message) int {
	n := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}
