package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
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
