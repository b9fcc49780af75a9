package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

func TestRecordRoundTrip(t *testing.T) {
	in := testEvent("orders/eu", "e-1", 7)
	in.Payload = []byte(`{"nested":{"a":[1,2,3]},"s":"ü"}`)
	v, err := Encode(&in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(v)
	if err != nil {
		t.Fatalf("decode %s: %v", v, err)
	}
	if out.Topic != in.Topic || out.EventID != in.EventID || out.Source != in.Source ||
		!out.Timestamp.Equal(in.Timestamp) || string(out.Payload) != string(in.Payload) {
		t.Fatalf("round trip changed the event:\n in %+v\nout %+v", in, out)
	}
	if got := string(Key(&in)); got != "orders/eu/e-1" {
		t.Errorf("Key = %q", got)
	}
}

func TestDecodePoison(t *testing.T) {
	for name, v := range map[string]string{
		"empty":           ``,
		"not json":        `not json`,
		"array":           `[{"topic":"a","event_id":"1","timestamp":"2026-01-01T00:00:00Z","source":"s"}]`,
		"two in envelope": `{"events":[{"topic":"a","event_id":"1","timestamp":"2026-01-01T00:00:00Z","source":"s"},{"topic":"a","event_id":"2","timestamp":"2026-01-01T00:00:00Z","source":"s"}]}`,
		"no timestamp":    `{"topic":"a","event_id":"1","source":"s"}`,
		"bad payload":     `{"topic":"a","event_id":"1","timestamp":"2026-01-01T00:00:00Z","source":"s","payload":[1]}`,
		"control char":    `{"topic":"a\u0001","event_id":"1","timestamp":"2026-01-01T00:00:00Z","source":"s"}`,
		"bad utf-8":       "{\"topic\":\"a\xff\",\"event_id\":\"1\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"source\":\"s\"}",
		"truncated":       `{"topic":"a","event_id":"1"`,
	} {
		if e, err := Decode([]byte(v)); err == nil {
			t.Errorf("%s: decoded %+v, want a poison error", name, e)
		}
	}
	var ve *event.ValidationError
	if _, err := Decode([]byte(`{"topic":"a","event_id":"1","source":"s"}`)); !errors.As(err, &ve) {
		t.Errorf("missing timestamp: %v, want a *event.ValidationError", err)
	}
}

func TestDeadLetterRecord(t *testing.T) {
	m := kafka.Message{Topic: "events", Partition: 3, Offset: 42, Key: []byte("k"), Value: []byte("junk"),
		Headers: []kafka.Header{{Key: "traceparent", Value: []byte("tp")}}}
	d := deadLetter(&m, errors.New(strings.Repeat("é", 1000)))
	if string(d.Key) != "k" || string(d.Value) != "junk" || d.Topic != "" {
		t.Fatalf("dead letter %+v", d)
	}
	want := map[string]string{"traceparent": "tp", HeaderDLQTopic: "events", HeaderDLQPartition: "3", HeaderDLQOffset: "42"}
	for k, v := range want {
		if got := headerValue(d.Headers, k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if r := headerValue(d.Headers, HeaderDLQReason); len(r) > maxReasonBytes || !strings.HasPrefix(r, "éé") || !utf8Valid(r) {
		t.Errorf("reason not bounded valid UTF-8: %d bytes", len(r))
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\x00") == s }

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "new\nline\r\t", "\x00\x01\x1f\x7f",
		"ünïcödé ✓ 😀", "\u2028\u2029", "bad\xffutf8", "</script>&"} {
		e := testEvent(s, s, 1)
		got, err := Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(got) {
			t.Fatalf("%q: invalid JSON %s", s, got)
		}
		var back struct {
			EventID string `json:"event_id"`
		}
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if back.EventID != want {
			t.Errorf("event_id %q came back as %q", want, back.EventID)
		}
		std, _ := json.Marshal(&e)
		var a, b map[string]any
		_ = json.Unmarshal(got, &a)
		_ = json.Unmarshal(std, &b)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%q: Encode %s, encoding/json %s", s, got, std)
		}
	}
	e := testEvent("t", "i", 1)
	e.Payload = nil
	got, _ := Encode(&e)
	if d, err := Decode(got); err != nil || string(d.Payload) != "{}" {
		t.Errorf("nil payload: %s → %+v, %v", got, d, err)
	}
}

func TestDeadLetterStub(t *testing.T) {
	m := kafka.Message{Topic: "events", Partition: 3, Offset: 42, Key: bytes.Repeat([]byte("k"), 2000),
		Value: bytes.Repeat([]byte("v"), 100_000), Headers: []kafka.Header{{Key: "baggage", Value: make([]byte, 8000)}}}
	d := deadLetter(&m, errors.New("record value is not a JSON object"))
	size := recordSize(&d)
	refused := kafka.WriteErrors{kafka.MessageSizeTooLarge}

	s := stub(&d, refused, maxStubValue)
	if len(s.Value) != maxStubValue || len(s.Key) != maxStubKey || string(s.Value[:3]) != "vvv" {
		t.Errorf("stub key %d bytes, value %d bytes; want %d and %d", len(s.Key), len(s.Value), maxStubKey, maxStubValue)
	}
	want := map[string]string{HeaderDLQTopic: "events", HeaderDLQPartition: "3", HeaderDLQOffset: "42",
		HeaderDLQSize: strconv.Itoa(size), "baggage": ""}
	for k, v := range want {
		if got := headerValue(s.Headers, k); got != v {
			t.Errorf("stub header %s = %q, want %q", k, got, v)
		}
	}
	r := headerValue(s.Headers, HeaderDLQReason)
	for _, part := range []string{"too large", strconv.Itoa(size), "not a JSON object"} {
		if !strings.Contains(r, part) {
			t.Errorf("stub reason %q does not say %q", r, part)
		}
	}
	if s := stub(&d, kafka.InvalidRecord, 0); len(s.Value) != 0 || len(s.Key) != 0 ||
		!strings.Contains(headerValue(s.Headers, HeaderDLQReason), "Invalid Record") {
		t.Errorf("empty stub %q/%q, reason %q", s.Key, s.Value, headerValue(s.Headers, HeaderDLQReason))
	}
}

func TestRefusedForGood(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{kafka.MessageTooLargeError{}, true},
		{kafka.WriteErrors{kafka.MessageSizeTooLarge}, true},
		{kafka.WriteErrors{fmt.Errorf("%w: too big", kafka.RecordListTooLarge)}, true},
		{kafka.WriteErrors{kafka.InvalidRecord}, true},
		{kafka.WriteErrors{kafka.NotLeaderForPartition}, false},
		{kafka.WriteErrors{kafka.TopicAuthorizationFailed}, false},
		{kafka.UnknownTopicOrPartition, false},
		{context.DeadlineExceeded, false},
	} {
		if got := refusedForGood(tc.err); got != tc.want {
			t.Errorf("refusedForGood(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// BenchmarkDecodeRecord reads a record as Encode writes it.
func BenchmarkDecodeRecord(b *testing.B) {
	in := testEvent("orders", "3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60", 1)
	in.Payload = []byte(`{"customer":"c-1042","total":99.5,"items":[{"sku":"a-1","qty":2}]}`)
	v, err := Encode(&in)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(v); err != nil {
			b.Fatal(err)
		}
	}
}
