package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const good = `{"topic":"orders","event_id":"e-1","timestamp":"2026-11-25T10:00:00Z","source":"shop-1","payload":{"n":1}}`

func TestDecodeShapes(t *testing.T) {
	second := strings.Replace(good, `"e-1"`, `"e-2"`, 1)
	cases := []struct {
		name string
		body string
		f    Format
		want []string // event ids
	}{
		{"object", good, JSON, []string{"e-1"}},
		{"array", "[" + good + "," + second + "]", JSON, []string{"e-1", "e-2"}},
		{"envelope", `{"events":[` + good + "," + second + "]}", JSON, []string{"e-1", "e-2"}},
		{"ndjson", good + "\n\n" + second + "\n", NDJSON, []string{"e-1", "e-2"}},
		{"ndjson crlf", good + "\r\n" + second, NDJSON, []string{"e-1", "e-2"}},
		{"empty array", "[]", JSON, nil},
		{"empty ndjson", "\n\n", NDJSON, nil},
		{"whitespace around", " \n\t" + good + "\n ", JSON, []string{"e-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode([]byte(c.body), c.f, DefaultLimits)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %d events, want %d", len(got), len(c.want))
			}
			for i, id := range c.want {
				if got[i].EventID != id {
					t.Errorf("event %d: id %q, want %q", i, got[i].EventID, id)
				}
			}
		})
	}
}

func TestDecodeFields(t *testing.T) {
	got, err := Decode([]byte(`{"topic":"t","event_id":"x","timestamp":"2026-11-25T12:00:00.123456789+02:00","source":"s"}`), JSON, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	e := got[0]
	// Microseconds, in UTC: what every store keeps.
	want := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	if !e.Timestamp.Equal(want) || e.Timestamp.Location() != time.UTC {
		t.Errorf("timestamp %v, want %v in UTC", e.Timestamp, want)
	}
	if string(e.Payload) != "{}" {
		t.Errorf("absent payload = %s, want {}", e.Payload)
	}
	local, err := ParseTime("2026-11-25T10:00:00")
	if err != nil || !local.Equal(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("zone-less time = %v, %v; want it read as UTC", local, err)
	}
}

// ev2 is the good event with old replaced by new once.
func ev2(old, new string) string { return strings.Replace(good, old, new, 1) }

// TestDecodeRules is the table of every rule of openapi.json and the error
// class it maps to.
func TestDecodeRules(t *testing.T) {
	ev := func(mutate func(m map[string]any)) string {
		m := map[string]any{}
		_ = json.Unmarshal([]byte(good), &m)
		mutate(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	long := strings.Repeat("a", MaxNameBytes+1)
	type class int
	const (
		syntax class = iota
		invalid
		tooMany
	)
	cases := []struct {
		name  string
		body  string
		f     Format
		class class
		field string // for invalid: the first field reported
	}{
		{"not json", `{"topic":`, JSON, syntax, ""},
		{"empty body", ``, JSON, syntax, ""},
		{"scalar body", `42`, JSON, syntax, ""},
		{"trailing garbage", "[" + good + "] x", JSON, syntax, ""},
		{"invalid utf-8", "[{\"topic\":\"\xff\"}]", JSON, syntax, ""},
		{"events not array", `{"events":{}}`, JSON, syntax, ""},
		{"ndjson garbage line", good + "\nnot json", NDJSON, syntax, ""},
		{"ndjson array line", "[" + good + "]", NDJSON, syntax, ""},
		{"deep nesting", "[" + strings.Repeat(`{"a":`, 20000) + strings.Repeat("}", 20000) + "]", JSON, syntax, ""},
		{"missing topic", ev(func(m map[string]any) { delete(m, "topic") }), JSON, invalid, "topic"},
		{"empty event_id", ev(func(m map[string]any) { m["event_id"] = "" }), JSON, invalid, "event_id"},
		{"long source", ev(func(m map[string]any) { m["source"] = long }), JSON, invalid, "source"},
		{"control char", ev(func(m map[string]any) { m["topic"] = "a\x00b" }), JSON, invalid, "topic"},
		{"c1 control char", ev(func(m map[string]any) { m["event_id"] = "a\u0085b" }), JSON, invalid, "event_id"},
		{"numeric id", ev(func(m map[string]any) { m["event_id"] = 7 }), JSON, invalid, "event_id"},
		{"bad timestamp", ev(func(m map[string]any) { m["timestamp"] = "yesterday" }), JSON, invalid, "timestamp"},
		{"year 10000 in UTC", ev(func(m map[string]any) { m["timestamp"] = "9999-12-31T23:00:00-05:00" }), JSON, invalid, "timestamp"},
		{"year 0 in UTC", ev(func(m map[string]any) { m["timestamp"] = "0000-01-01T00:00:00+01:00" }), JSON, invalid, "timestamp"},
		{"comma fraction", ev(func(m map[string]any) { m["timestamp"] = "2026-11-25T10:00:00,5Z" }), JSON, invalid, "timestamp"},
		{"ten fraction digits", ev(func(m map[string]any) { m["timestamp"] = "2026-11-25T10:00:00.1234567891Z" }), JSON, invalid, "timestamp"},
		{"space and zone", ev(func(m map[string]any) { m["timestamp"] = "2026-11-25 10:00:00Z" }), JSON, invalid, "timestamp"},
		{"missing timestamp", ev(func(m map[string]any) { delete(m, "timestamp") }), JSON, invalid, "timestamp"},
		{"payload array", ev(func(m map[string]any) { m["payload"] = []int{1} }), JSON, invalid, "payload"},
		{"payload string", ev(func(m map[string]any) { m["payload"] = "x" }), JSON, invalid, "payload"},
		{"array element not object", "[" + good + ",3]", JSON, invalid, ""},
		{"lone high surrogate in topic", ev2(`"topic":"orders"`, `"topic":"a\ud800"`), JSON, invalid, "topic"},
		{"lone low surrogate in event_id", ev2(`"event_id":"e-1"`, `"event_id":"a\udc00b"`), JSON, invalid, "event_id"},
		{"high surrogate then not low", ev2(`"source":"shop-1"`, `"source":"\ud800\u0041"`), JSON, invalid, "source"},
		{"reversed pair", ev2(`"source":"shop-1"`, `"source":"\udc00\ud800"`), JSON, invalid, "source"},
		{"lone surrogate in payload", ev2(`"payload":{"n":1}`, `"payload":{"k":"\ud800"}`), JSON, invalid, "payload"},
		{"lone surrogate in ndjson", ev2(`"topic":"orders"`, `"topic":"\udbff"`), NDJSON, invalid, "topic"},
		{"event that is also an envelope", ev2(`{`, `{"events":[],`), JSON, syntax, ""},
		{"event with EVENTS", ev2(`{`, `{"EVENTS":[],`), JSON, syntax, ""},
		{"envelope in the wrong case", `{"Events":[` + good + `]}`, JSON, syntax, ""},
		{"envelope twice", `{"events":[` + good + `],"events":[]}`, JSON, syntax, ""},
		{"envelope null", `{"events":null}`, JSON, syntax, ""},
		{"array element with events", "[" + ev2(`{`, `{"events":[],`) + "]", JSON, invalid, "events"},
		{"ndjson event with events", ev2(`{`, `{"Events":[],`), NDJSON, invalid, "Events"},
		{"duplicate topic", ev2(`"topic":"orders"`, `"topic":"orders","topic":"other"`), JSON, invalid, "topic"},
		{"duplicate by escape", ev2(`"topic":"orders"`, `"topic":"orders","to\u0070ic":"other"`), JSON, invalid, "topic"},
		{"duplicate payload", ev2(`"payload":{"n":1}`, `"payload":{"n":1},"payload":{}`), JSON, invalid, "payload"},
		{"topic in the wrong case", ev2(`"topic":"orders"`, `"topic":"orders","TOPIC":"other"`), JSON, invalid, "TOPIC"},
		{"only the wrong case", ev2(`"event_id":"e-1"`, `"Event_ID":"e-1"`), JSON, invalid, "Event_ID"},
		{"ndjson bad field", good + "\n" + ev(func(m map[string]any) { m["source"] = "" }), NDJSON, invalid, "source"},
		{"too many", "[" + strings.Repeat(good+",", 10) + good + "]", JSON, tooMany, ""},
		{"too many ndjson", strings.Repeat(good+"\n", 11), NDJSON, tooMany, ""},
	}
	lim := Limits{MaxEvents: 10, MaxPayloadBytes: 1 << 10}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode([]byte(c.body), c.f, lim)
			if err == nil {
				t.Fatalf("Decode accepted %d events; want an error", len(got))
			}
			var (
				se *SyntaxError
				ve *ValidationError
				te *TooManyError
			)
			switch c.class {
			case syntax:
				if !errors.As(err, &se) {
					t.Fatalf("err = %v (%T), want *SyntaxError", err, err)
				}
			case tooMany:
				if !errors.As(err, &te) {
					t.Fatalf("err = %v (%T), want *TooManyError", err, err)
				}
			case invalid:
				if !errors.As(err, &ve) {
					t.Fatalf("err = %v (%T), want *ValidationError", err, err)
				}
				if ve.Errors[0].Field != c.field {
					t.Errorf("field = %q, want %q (%v)", ve.Errors[0].Field, c.field, ve.Errors)
				}
			}
		})
	}
}

func TestDecodeReportsEveryBadItem(t *testing.T) {
	body := `[` + good + `,{"topic":"","event_id":5,"timestamp":"x","source":"s"},` + good + `,{"topic":"t"}]`
	_, err := Decode([]byte(body), JSON, DefaultLimits)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want *ValidationError", err)
	}
	got := map[string]bool{}
	for _, fe := range ve.Errors {
		got[fmt.Sprintf("%d.%s", fe.Index, fe.Field)] = true
	}
	for _, want := range []string{"1.event_id", "1.topic", "1.timestamp", "3.event_id", "3.timestamp", "3.source"} {
		if !got[want] {
			t.Errorf("missing error %s in %v", want, ve.Errors)
		}
	}
	if got["0.topic"] || got["2.topic"] {
		t.Errorf("valid items reported: %v", ve.Errors)
	}
}

func TestPayloadLimit(t *testing.T) {
	big := `{"topic":"t","event_id":"x","timestamp":"2026-11-25T10:00:00Z","source":"s","payload":{"b":"` + strings.Repeat("x", 300) + `"}}`
	if _, err := Decode([]byte(big), JSON, Limits{MaxEvents: 1, MaxPayloadBytes: 200}); err == nil {
		t.Fatal("payload over the limit accepted")
	}
	if _, err := Decode([]byte(big), JSON, Limits{MaxEvents: 1, MaxPayloadBytes: 400}); err != nil {
		t.Fatalf("payload under the limit refused: %v", err)
	}
}

func TestKeyStringUnambiguous(t *testing.T) {
	a := Key{Topic: "a/b", EventID: "c"}
	b := Key{Topic: "a", EventID: "b/c"}
	if a.String() == b.String() {
		t.Fatalf("keys %v and %v share the string %q", a, b, a.String())
	}
}

// TestDecodeKeepsNamesAndPayload: names with valid escapes (a surrogate pair)
// are the characters sent, and the payload is kept byte for byte, spacing,
// key order, duplicate keys and escapes included.
func TestDecodeKeepsNamesAndPayload(t *testing.T) {
	payload := "{ \"b\" : [1, 2.50],\n\t\"a\":\"<&>\\u00e9\\ud83d\\ude00\", \"a\": null }"
	body := `{"topic":"t\ud83d\ude00","event_id":"\u00e9\\\"","timestamp":"2026-11-25T10:00:00Z","source":"s","payload":` + payload + `}`
	got, err := Decode([]byte(body), JSON, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Topic != "t😀" || got[0].EventID != "é\\\"" {
		t.Errorf("names %q %q", got[0].Topic, got[0].EventID)
	}
	if string(got[0].Payload) != payload {
		t.Errorf("payload\n%s\nwant\n%s", got[0].Payload, payload)
	}
}

// Extra fields are ignored, as the HTTP contract promises: publishers may add
// their own. Only known fields in another letter case and "events" are refused
// (TestDecodeRules).
func TestDecodeIgnoresExtraFields(t *testing.T) {
	want, err := Decode([]byte(good), JSON, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		ev2(`{`, `{"trace":"abc","attempt":2,`),
		ev2(`"payload":`, `"paylaod":{"lost":true},"payload":`),
		ev2(`{`, `{"meta":{"topic":"other"},`),
	} {
		got, err := Decode([]byte(body), JSON, DefaultLimits)
		if err != nil {
			t.Errorf("%s: %v", body, err)
			continue
		}
		if len(got) != 1 || got[0].Topic != want[0].Topic || got[0].EventID != want[0].EventID ||
			string(got[0].Payload) != string(want[0].Payload) {
			t.Errorf("%s: decoded %+v, want %+v", body, got, want)
		}
	}
}
