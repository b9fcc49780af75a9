package event

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzDecode: no body crashes the decoder, and whatever it accepts obeys the
// rules. The seed corpus runs in the normal suite.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		good, "[" + good + "]", `{"events":[` + good + `]}`, "[]", "{}", "null", `{"events":null}`,
		`[{"topic":"t","event_id":"x","timestamp":"2026-11-25T10:00:00","source":"s","payload":null}]`,
		`{"topic":"'); DROP TABLE events;--","event_id":"\u00e9","timestamp":"2026-11-25T10:00:00Z","source":"s"}`,
		"[\"\xff\"]", `{"topic":"t","event_id":"x","timestamp":"9999-12-31T23:59:59-00:01","source":"s"}`, `[{"payload":{"a":[[[[[]]]]]}}]`, `{"topic":"\u0000"}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, ndjson bool) {
		format := JSON
		if ndjson {
			format = NDJSON
		}
		lim := Limits{MaxEvents: 50, MaxPayloadBytes: 4096}
		events, err := Decode(body, format, lim)
		if err != nil {
			var se *SyntaxError
			var ve *ValidationError
			var te *TooManyError
			if !errors.As(err, &se) && !errors.As(err, &ve) && !errors.As(err, &te) {
				t.Fatalf("unclassified error %T: %v", err, err)
			}
			if events != nil {
				t.Fatal("events returned with an error")
			}
			return
		}
		if len(events) > lim.MaxEvents {
			t.Fatalf("%d events over the limit", len(events))
		}
		for _, e := range events {
			for _, s := range []string{e.Topic, e.EventID, e.Source} {
				if s == "" || len(s) > MaxNameBytes || !utf8.ValidString(s) || hasControl(s) {
					t.Fatalf("accepted bad name %q", s)
				}
			}
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(e.Payload, &obj); err != nil || obj == nil {
				t.Fatalf("accepted payload %q that is not an object: %v", e.Payload, err)
			}
			if e.Timestamp.Location().String() != "UTC" {
				t.Fatalf("timestamp not in UTC: %v", e.Timestamp)
			}
			if _, err := e.Timestamp.MarshalJSON(); err != nil {
				t.Fatalf("accepted a timestamp that cannot be written back: %v", err)
			}
		}
	})
}
