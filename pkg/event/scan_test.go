package event

import (
	"bytes"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// fastSeeds are bodies at the edges of what the fast path reads: each must
// be decided exactly as the full decoder decides it.
var fastSeeds = []string{
	good, "[" + good + "]", `{"events":[` + good + `]}`, good + "\n" + good, "[]", "{}", `{"events":[]}`,
	// White space everywhere JSON allows it, and a payload kept as sent.
	" \t\r\n[ \n" + strings.ReplaceAll(good, ":", " : ") + " , " + strings.ReplaceAll(good, ",", " ,\n") + " ] \n",
	ev2(`"payload":{"n":1}`, `"payload": { "a" : [1, -2.5e+3, 0, true, false, null, {}, [], "x\"\\\/\b\f\n\r\t\u00e9"] } `),
	ev2(`"payload":{"n":1}`, `"payload":null`),
	ev2(`"payload":{"n":1}`, `"payload" : null `),
	ev2(`"payload":{"n":1}`, `"payload":[]`),
	ev2(`"payload":{"n":1}`, `"payload":{"k":"\ud83d\ude00"}`),
	ev2(`"payload":{"n":1}`, `"payload":{"k":"\ud800"}`),
	ev2(`"payload":{"n":1}`, `"payload":{"\udc00":1}`),
	ev2(`"payload":{"n":1}`, `"payload":{"a":1,"a":2}`),
	ev2(`"payload":{"n":1}`, `"payload":{"a":01}`),
	ev2(`"payload":{"n":1}`, `"payload":{"a":1.}`),
	ev2(`"payload":{"n":1}`, `"payload":{"a":-}`),
	ev2(`"payload":{"n":1}`, `"payload":{"a":1e}`),
	ev2(`"payload":{"n":1}`, `"payload":{"a":tru}`),
	ev2(`"payload":{"n":1}`, `"payload":{"a":[1,]}`),
	ev2(`"payload":{"n":1}`, `"payload":{"a":1,}`),
	ev2(`"payload":{"n":1}`, `"payload":{"a" 1}`),
	ev2(`"payload":{"n":1}`, `"payload":{"a":"\x"}`),
	ev2(`"payload":{"n":1}`, `"payload":{"a":"\u12g4"}`),
	ev2(`"payload":{"n":1}`, "\"payload\":{\"a\":\"\t\"}"),
	// Names: escapes, case variants by Unicode folding, extra fields.
	ev2(`"topic":"orders"`, `"\u0074opic":"orders"`),
	ev2(`"topic":"orders"`, `"topic":"orders","to\u0070ic":"x"`),
	ev2(`"source":"shop-1"`, `"ſource":"shop-1"`),
	ev2(`"source":"shop-1"`, `"source":"shop-1","ſource":"x"`),
	ev2(`{`, `{"eventſ":[],`),
	ev2(`{`, `{"trace":"a","trace":"b",`),
	ev2(`{`, `{"a\ud800":1,"a\udbff":2,`),
	ev2(`{`, `{"a\ud800":1,"a\ufffd":2,`),
	ev2(`{`, `{"x":"\ud800",`),
	ev2(`{`, `{"":1,`),
	`{"\u0065vents":[` + good + `]}`,
	`{"events":[` + good + `],"x":1}`,
	`{"events" : [` + good + `] } `,
	`{"events":[` + good + `]`,
	// Values of the known fields.
	ev2(`"topic":"orders"`, `"topic":"or\u0064ers"`),
	ev2(`"topic":"orders"`, `"topic":"\ud83d\ude00"`),
	ev2(`"topic":"orders"`, `"topic":"a\u0085"`),
	ev2(`"topic":"orders"`, `"topic":"a\u007f"`),
	ev2(`"topic":"orders"`, `"topic":"a\u00a0"`),
	ev2(`"topic":"orders"`, `"topic":null`),
	ev2(`"topic":"orders"`, `"topic":1`),
	ev2(`"topic":"orders"`, `"topic":"`+strings.Repeat("é", 127)+`x"`),
	ev2(`"topic":"orders"`, `"topic":"`+strings.Repeat("é", 128)+`"`),
	ev2(`"timestamp":"2026-11-25T10:00:00Z"`, `"timestamp":"2026-11-25T10:00:00.123456789+05:30"`),
	ev2(`"timestamp":"2026-11-25T10:00:00Z"`, `"timestamp":"2026-11-25 10:00:00.5"`),
	ev2(`"timestamp":"2026-11-25T10:00:00Z"`, `"timestamp":"2026-11-25T10:00:0\u0030Z"`),
	ev2(`"timestamp":"2026-11-25T10:00:00Z"`, `"timestamp":"2026-02-30T10:00:00Z"`),
	ev2(`"timestamp":"2026-11-25T10:00:00Z"`, `"timestamp":"0001-01-01T00:00:00+00:01"`),
	strings.TrimSuffix(good, "}") + ",}", strings.Replace(good, "{", "{,", 1), strings.Replace(good, ",", ",,", 1),
	strings.Replace(good, ":", "", 1), strings.Replace(good, `"topic"`, "topic", 1), strings.TrimSuffix(good, "}"),
	// Around the events.
	"[" + good + "," + good + "]", "[" + good + "," + "]", "[" + good + " " + good + "]", "[" + good,
	"[" + good + "] x", "[" + good + "]]", "[null]", "[[]]", good + good,
	"\u00a0" + good + "\u00a0", good + "\r\n\r\n" + good + "\r\n", good + "\n[" + good + "]", good + " x",
}

// FuzzFastMatchesFull: what the fast path accepts, the full decoder accepts
// with the same events; and every body the full decoder accepts is taken by
// the fast path (apart from the forms it leaves to the full decoder).
func FuzzFastMatchesFull(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, ndjson bool) {
		if !utf8.Valid(body) {
			return // Decode refuses it before either path
		}
		format := JSON
		if ndjson {
			format = NDJSON
		}
		for _, lim := range []Limits{DefaultLimits, {MaxEvents: 2, MaxPayloadBytes: 16}} {
			fast, ok := decodeFast(body, format, lim)
			full, err := decodeFull(body, format, lim)
			switch {
			case ok && err != nil:
				t.Fatalf("fast path accepted %q, full decoder refused it: %v", body, err)
			case ok && !reflect.DeepEqual(fast, full):
				t.Fatalf("%q: fast path decoded\n%+v\nfull decoder\n%+v", body, fast, full)
			case !ok && err == nil && !leftToFull(body):
				t.Fatalf("fast path gave up on %q, which the full decoder accepts", body)
			}
			got, gotErr := Decode(body, format, lim)
			if !reflect.DeepEqual(got, full) || !reflect.DeepEqual(gotErr, err) {
				t.Fatalf("%q: Decode = %+v, %v; full decoder %+v, %v", body, got, gotErr, full, err)
			}
		}
	})
}

// leftToFull reports whether a body may hold a form the fast path leaves to
// the full decoder: nesting near the limit or an event with very many
// members.
func leftToFull(body []byte) bool {
	return bytes.Count(body, []byte("{"))+bytes.Count(body, []byte("[")) >= maxDepth ||
		bytes.Count(body, []byte(":")) > maxFastMembers
}

// TestFastPathTakesValidBodies: the bodies of the decoder's own tests that
// are valid do not fall back to the slower full decoder.
func TestFastPathTakesValidBodies(t *testing.T) {
	for _, body := range []string{
		good, "[" + good + "]", `{"events":[` + good + `]}`, `{"\u0065vents":[` + good + `]}`,
		ev2(`{`, `{"trace":"abc","attempt":2,"meta":{"topic":"x","a":[1,{"b":null}]},`),
		ev2(`"topic":"orders"`, `"to\u0070ic":"\ud83d\ude00"`),
		ev2(`"payload":{"n":1}`, `"payload":null`),
		ev2(`{`, `{"x\ud800":"\udc00",`),
	} {
		if _, ok := decodeFast([]byte(body), JSON, DefaultLimits); !ok {
			t.Errorf("fast path gave up on %s", body)
		}
	}
	if _, ok := decodeFast([]byte(good+"\n"+good), NDJSON, DefaultLimits); !ok {
		t.Error("fast path gave up on NDJSON")
	}
}

// TestDecodeCopiesPayload: an event does not share memory with the body,
// which a caller may reuse once Decode returns.
func TestDecodeCopiesPayload(t *testing.T) {
	body := []byte(good)
	got, err := Decode(body, JSON, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'x'
	}
	if string(got[0].Payload) != `{"n":1}` || got[0].Topic != "orders" {
		t.Errorf("event changed with the body: %+v", got[0])
	}
}

// timeShapeRE is the timestamp syntax openapi.json states, as a regular
// expression; timeShape matches it by hand.
var timeShapeRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?| [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?)$`)

func FuzzTimeShape(f *testing.F) {
	for _, s := range []string{
		"2026-11-25T10:00:00Z", "2026-11-25T10:00:00", "2026-11-25 10:00:00", "2026-11-25 10:00:00Z",
		"2026-11-25T10:00:00.123456789+05:30", "2026-11-25T10:00:00.1234567891Z", "2026-11-25T10:00:00.Z",
		"2026-11-25T10:00:00,5Z", "2026-11-25", "2026-11-25T10:00:00+0530", "2026-11-25T10:00:00z",
		"2026-11-25T10:00:00Z\n", "２026-11-25T10:00:00Z", "2026-11-25 10:00:00.5", "2026-11-25 10:00:00.5+01:00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := timeShape(s), timeShapeRE.MatchString(s); got != want {
			t.Fatalf("timeShape(%q) = %v, the regular expression says %v", s, got, want)
		}
	})
}

// TestDecodeNestingLimit: around encoding/json's nesting limit, whichever path
// decides, Decode answers as the full decoder does, and the fast path takes
// every body nested no deeper than the limit.
func TestDecodeNestingLimit(t *testing.T) {
	for _, depth := range []int{maxDepth - 3, maxDepth - 2, maxDepth - 1, maxDepth, maxDepth + 1} {
		nested := strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
		ev := ev2(`"payload":{"n":1}`, `"payload":`+nested)
		for _, c := range []struct {
			shape string
			body  string
			f     Format
			outer int // containers around the event
		}{
			{"object", ev, JSON, 0},
			{"array", "[" + ev + "]", JSON, 1},
			{"envelope", `{"events":[` + ev + "]}", JSON, 2},
			{"ndjson", ev, NDJSON, 0},
		} {
			body := []byte(c.body)
			got, err := Decode(body, c.f, DefaultLimits)
			want, wantErr := decodeFull(body, c.f, DefaultLimits)
			if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(err, wantErr) {
				t.Errorf("%s, payload %d deep: Decode = %d events, %v; full decoder %d, %v",
					c.shape, depth, len(got), err, len(want), wantErr)
			}
			// The event itself is one level, the payload depth more.
			if _, ok := decodeFast(body, c.f, DefaultLimits); !ok && c.outer+1+depth <= maxDepth {
				t.Errorf("%s, payload %d deep: fast path gave up", c.shape, depth)
			}
		}
	}
}
