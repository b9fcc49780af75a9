package event

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"
	"unicode/utf16"
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

// FuzzDistinctKeys: two bodies whose names are different texts never store
// the same key. Each fuzzed string is put, as sent, between the quotes of
// topic and event_id; whatever Decode accepts must be exactly the UTF-16 code
// units the JSON text spells, so no two different texts can meet.
func FuzzDistinctKeys(f *testing.F) {
	for _, s := range [][2]string{
		{`a\ud800`, `a\udbff`}, {`a\udc00`, `a\ufffd`}, {`\u00e9`, `é`}, {`\ud83d\ude00`, `😀`},
		{`x\\`, `x\u005c`}, {`a\ud800\u0041`, `a\ufffdA`}, {`\"`, `\u0022`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ka, oka := decodeName(t, a)
		kb, okb := decodeName(t, b)
		if !oka || !okb {
			return
		}
		ua, va := spelled(a)
		ub, vb := spelled(b)
		if !va || !vb {
			t.Fatalf("accepted %q / %q that do not spell Unicode", a, b)
		}
		if !slices.Equal(utf16.Encode([]rune(ka.EventID)), ua) || !slices.Equal(utf16.Encode([]rune(kb.EventID)), ub) {
			t.Fatalf("stored %q for %q, %q for %q: not the text sent", ka.EventID, a, kb.EventID, b)
		}
		if ka == kb && !slices.Equal(ua, ub) {
			t.Fatalf("%q and %q are different texts but store the same key %v", a, b, ka)
		}
	})
}

// decodeName decodes an event whose topic and event_id are the JSON string
// contents s.
func decodeName(t *testing.T, s string) (Key, bool) {
	body := `{"topic":"` + s + `","event_id":"` + s + `","timestamp":"2026-11-25T10:00:00Z","source":"s"}`
	events, err := Decode([]byte(body), JSON, DefaultLimits)
	if err != nil || len(events) != 1 {
		return Key{}, false
	}
	if events[0].Topic != events[0].EventID {
		t.Fatalf("the same text gave topic %q and event_id %q", events[0].Topic, events[0].EventID)
	}
	return events[0].Key(), true
}

// spelled returns the UTF-16 code units the contents of a JSON string spell,
// without replacing anything, and whether they are valid UTF-16.
func spelled(s string) ([]uint16, bool) {
	var u []uint16
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			r, n := utf8.DecodeRuneInString(s[i:])
			u = utf16.AppendRune(u, r)
			i += n
			continue
		}
		if i+1 >= len(s) {
			return nil, false
		}
		if c := s[i+1]; c != 'u' {
			m := map[byte]uint16{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}
			v, ok := m[c]
			if !ok {
				return nil, false
			}
			u = append(u, v)
			i += 2
			continue
		}
		if i+6 > len(s) {
			return nil, false
		}
		n, err := strconv.ParseUint(s[i+2:i+6], 16, 16)
		if err != nil {
			return nil, false
		}
		u = append(u, uint16(n))
		i += 6
	}
	return u, !loneIn(u)
}

// loneIn reports whether u holds a surrogate that is not part of a pair.
func loneIn(u []uint16) bool {
	for i := 0; i < len(u); i++ {
		switch {
		case u[i] >= 0xd800 && u[i] < 0xdc00 && i+1 < len(u) && u[i+1] >= 0xdc00 && u[i+1] < 0xe000:
			i++
		case u[i] >= 0xd800 && u[i] < 0xe000:
			return true
		}
	}
	return false
}
