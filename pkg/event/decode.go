package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits bound what one publish body may hold.
type Limits struct {
	MaxEvents       int // most events in one body
	MaxPayloadBytes int // largest encoded payload of one event
}

// DefaultLimits are the limits openapi.json states.
var DefaultLimits = Limits{MaxEvents: 10_000, MaxPayloadBytes: 256 << 10}

// Format is the encoding of a publish body.
type Format int

// The body formats POST /publish accepts.
const (
	JSON   Format = iota // one object, an array, or {"events": [...]}
	NDJSON               // one event object per line
)

// SyntaxError means the body is not parseable as the format it claims: 400.
type SyntaxError struct{ Reason string }

func (e *SyntaxError) Error() string { return "malformed body: " + e.Reason }

// TooManyError means the body holds more events than allowed: 413.
type TooManyError struct{ Max int }

func (e *TooManyError) Error() string {
	return fmt.Sprintf("more than %d events in one request", e.Max)
}

// FieldError is one rule an event broke.
type FieldError struct {
	Index   int    `json:"index"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every rule the events of a body broke: 422.
type ValidationError struct{ Errors []FieldError }

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%d invalid field(s), first: events[%d].%s: %s",
		len(e.Errors), e.Errors[0].Index, e.Errors[0].Field, e.Errors[0].Message)
}

// maxReportedErrors caps the list a client gets back for a huge bad batch.
const maxReportedErrors = 100

// wire is an event as it arrives. Pointers tell a missing field from an
// empty one.
type wire struct {
	Topic     *string
	EventID   *string
	Timestamp *string
	Source    *string
	Payload   json.RawMessage
}

// Decode parses a whole publish body into valid events. The request is all or
// nothing: any broken rule fails the whole body, with every broken rule listed
// (up to a cap) in a *ValidationError. Other errors are *SyntaxError or
// *TooManyError.
//
// Nothing is merged or dropped silently: a field given twice, a field name in
// the wrong letter case, a name that is not exactly the text sent (a lone
// UTF-16 surrogate escape) and an event that also carries "events" are all
// refused. Other extra fields are ignored, as the HTTP contract promises.
//
// A valid body is read in one pass by decodeFast; a body it gives up on is
// decided and explained by decodeFull, so both give the same answer. The
// events never share memory with body, which the caller may reuse.
func Decode(body []byte, f Format, lim Limits) ([]Event, error) {
	// JSON text must be UTF-8 (RFC 8259); encoding/json would silently replace
	// bad bytes, and an event must be stored as sent or refused.
	if !utf8.Valid(body) {
		return nil, &SyntaxError{Reason: "body is not valid UTF-8"}
	}
	if events, ok := decodeFast(body, f, lim); ok {
		return events, nil
	}
	return decodeFull(body, f, lim)
}

// decodeFull decodes a body with encoding/json, reporting every rule it
// breaks. Decode takes this path for the bodies the fast path gives up on:
// every refused body, and a few valid ones of forms it does not handle.
func decodeFull(body []byte, f Format, lim Limits) ([]Event, error) {
	d := decoder{lim: lim}
	var err error
	if f == NDJSON {
		err = d.ndjson(body)
	} else {
		err = d.json(body)
	}
	if err != nil {
		return nil, err
	}
	if len(d.errs) > 0 {
		return nil, &ValidationError{Errors: d.errs}
	}
	return d.events, nil
}

type decoder struct {
	lim    Limits
	events []Event
	errs   []FieldError
	n      int // events seen, valid or not
}

func (d *decoder) json(body []byte) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return &SyntaxError{Reason: "empty body"}
	}
	switch trimmed[0] {
	case '[':
		return d.array(trimmed)
	case '{':
		ms, err := members(trimmed)
		if err != nil {
			return err
		}
		if env, err := envelope(ms); err != nil || env != nil {
			if err != nil {
				return err
			}
			return d.array(env)
		}
		if err := d.count(); err != nil {
			return err
		}
		d.event(d.n-1, ms)
		return nil
	default:
		return &SyntaxError{Reason: "body must be a JSON object or array"}
	}
}

// envelope returns the array of an {"events": [...]} body, nil for an event
// object, or an error for an object that could be read either way.
func envelope(ms []member) (json.RawMessage, error) {
	var envKey string
	for _, m := range ms {
		if strings.EqualFold(m.name, "events") {
			envKey = m.name
			break
		}
	}
	switch {
	case envKey == "":
		return nil, nil
	case len(ms) > 1:
		names := make([]string, len(ms))
		for i, m := range ms {
			names[i] = strconv.Quote(m.name)
		}
		return nil, &SyntaxError{Reason: fmt.Sprintf(
			`an object with %q is an envelope and must hold nothing else, this one holds %s; send one event or {"events": [...]}`,
			envKey, strings.Join(names, ", "))}
	case envKey != "events":
		return nil, &SyntaxError{Reason: fmt.Sprintf(`field names are case-sensitive: %q must be "events"`, envKey)}
	}
	if t := ms[0].value; len(t) == 0 || t[0] != '[' {
		return nil, &SyntaxError{Reason: `"events" must be an array`}
	}
	return ms[0].value, nil
}

// array decodes a JSON array one element at a time, so an element of the
// wrong shape is reported with its index and the rest is still checked.
func (d *decoder) array(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // '['
		return syntaxError(err)
	}
	for dec.More() {
		if err := d.count(); err != nil {
			return err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return syntaxError(err)
		}
		if raw[0] != '{' {
			d.fail(d.n-1, "", "event must be a JSON object")
			continue
		}
		ms, err := members(raw)
		if err != nil {
			return err
		}
		d.event(d.n-1, ms)
	}
	if _, err := dec.Token(); err != nil { // ']'
		return syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &SyntaxError{Reason: "unexpected data after the JSON value"}
	}
	return nil
}

// lines yields the lines of an NDJSON body that are not blank, trimmed:
// both decoders split a body this one way.
func lines(body []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(body) > 0 {
			line := body
			if i := bytes.IndexByte(body, '\n'); i >= 0 {
				line, body = body[:i], body[i+1:]
			} else {
				body = nil
			}
			if line = bytes.TrimSpace(line); len(line) > 0 && !yield(line) {
				return
			}
		}
	}
}

func (d *decoder) ndjson(body []byte) error {
	for line := range lines(body) {
		if err := d.count(); err != nil {
			return err
		}
		if line[0] != '{' {
			return &SyntaxError{Reason: fmt.Sprintf("line of event %d is not a JSON object", d.n-1)}
		}
		ms, err := members(line)
		var se *SyntaxError
		if errors.As(err, &se) {
			return &SyntaxError{Reason: fmt.Sprintf("event %d: %s", d.n-1, se.Reason)}
		}
		d.event(d.n-1, ms)
	}
	return nil
}

// member is one name/value pair of a JSON object, the value as sent.
type member struct {
	name  string
	value json.RawMessage
}

// members splits one JSON object text into its members, in order, keeping
// repeated names so the caller can refuse them.
func members(obj []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, syntaxError(err)
	}
	var ms []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		var m member
		m.name, _ = tok.(string) // inside an object, the decoder only yields string names
		if err := dec.Decode(&m.value); err != nil {
			return nil, syntaxError(err)
		}
		ms = append(ms, m)
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &SyntaxError{Reason: "unexpected data after the JSON value"}
	}
	return ms, nil
}

// fields are the members of an event, by their exact names.
var fields = []string{"topic", "event_id", "timestamp", "source", "payload"}

// event validates the event object at index i and keeps it if it is valid.
func (d *decoder) event(i int, ms []member) {
	var w wire
	seen := make(map[string]bool, len(ms))
	bad := map[string]bool{} // fields reported already
	for _, m := range ms {
		if seen[m.name] {
			d.fail(i, m.name, "appears more than once in the event")
			bad[m.name] = true
			continue
		}
		seen[m.name] = true
		var ok bool
		switch m.name {
		case "topic":
			w.Topic, ok = d.str(i, m)
		case "event_id":
			w.EventID, ok = d.str(i, m)
		case "timestamp":
			w.Timestamp, ok = d.str(i, m)
		case "source":
			w.Source, ok = d.str(i, m)
		case "payload":
			w.Payload, ok = m.value, true
		default:
			d.unknown(i, m.name)
			ok = true
		}
		if !ok {
			bad[m.name] = true
		}
	}
	e := d.validate(i, &w, bad)
	if len(d.errs) == 0 { // once a rule is broken the body fails whole
		d.events = append(d.events, e)
	}
}

// unknown checks a field the event does not have. Extra fields are ignored
// (publishers may add their own), but a known field in another letter case
// or "events" would lose a value or a whole batch without a word.
func (d *decoder) unknown(i int, name string) {
	for _, f := range fields {
		if strings.EqualFold(name, f) {
			d.fail(i, name, fmt.Sprintf("unknown field: field names are case-sensitive, this one must be %q", f))
			return
		}
	}
	if strings.EqualFold(name, "events") {
		d.fail(i, name, `an event must not carry "events": send one event, an array, or {"events": [...]} alone`)
	}
}

// str reads a string member. A value that is not a string, or whose escapes
// do not spell valid Unicode, is reported; a null one counts as missing.
func (d *decoder) str(i int, m member) (*string, bool) {
	if !validEscapes(m.value) {
		d.fail(i, m.name, loneSurrogate)
		return nil, false
	}
	var s *string
	if err := json.Unmarshal(m.value, &s); err != nil {
		d.fail(i, m.name, "must be a string")
		return nil, false
	}
	return s, true
}

const loneSurrogate = `contains a \u escape of a lone UTF-16 surrogate, which is not a character`

// validEscapes reports whether every \u escape in the JSON text b spells a
// Unicode scalar value: a high surrogate followed by a low one, or no
// surrogate. encoding/json replaces a lone surrogate with U+FFFD, so two
// different names would otherwise be stored as the same one.
func validEscapes(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+1 < len(b) && b[i+1] != 'u' {
			i++ // a two-byte escape such as \\ or \"
			continue
		}
		r, ok := hex4(b, i+2)
		switch {
		case !ok:
			return false
		case utf16.IsSurrogate(r) && r < 0xdc00: // high: a low one must follow
			lo, ok := hex4(b, i+8)
			if !ok || i+7 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' || lo < 0xdc00 || lo > 0xdfff {
				return false
			}
			i += 11
		case utf16.IsSurrogate(r): // a low one alone
			return false
		default:
			i += 5
		}
	}
	return true
}

// hex4 reads four hex digits at b[at:].
func hex4(b []byte, at int) (rune, bool) {
	if at < 0 || at+4 > len(b) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[at:at+4]), 16, 16)
	return rune(n), err == nil
}

func (d *decoder) count() error {
	d.n++
	if d.lim.MaxEvents > 0 && d.n > d.lim.MaxEvents {
		return &TooManyError{Max: d.lim.MaxEvents}
	}
	return nil
}

func (d *decoder) fail(index int, field, msg string) {
	if len(d.errs) < maxReportedErrors {
		d.errs = append(d.errs, FieldError{Index: index, Field: field, Message: msg})
	}
}

// validate applies the rules of an event; fields in bad were reported
// already.
func (d *decoder) validate(i int, w *wire, bad map[string]bool) Event {
	var e Event
	e.Topic = d.name(i, "topic", w.Topic, bad)
	e.EventID = d.name(i, "event_id", w.EventID, bad)
	e.Source = d.name(i, "source", w.Source, bad)
	switch {
	case bad["timestamp"]:
	case w.Timestamp == nil:
		d.fail(i, "timestamp", "is required")
	default:
		ts, err := ParseTime(*w.Timestamp)
		if err != nil {
			d.fail(i, "timestamp", err.Error())
		}
		// Both stores keep microseconds; cutting here makes every path
		// (Kafka, Postgres, SQLite) keep the same instant.
		e.Timestamp = ts.Truncate(time.Microsecond)
	}
	switch p := w.Payload; {
	case bad["payload"]:
	case len(p) == 0 || isNull(p):
		e.Payload = json.RawMessage(`{}`)
	case p[0] != '{':
		d.fail(i, "payload", "must be a JSON object or null")
	case d.lim.MaxPayloadBytes > 0 && len(p) > d.lim.MaxPayloadBytes:
		d.fail(i, "payload", fmt.Sprintf("is %d bytes, more than the limit of %d", len(p), d.lim.MaxPayloadBytes))
	case !validEscapes(p):
		d.fail(i, "payload", loneSurrogate)
	default:
		e.Payload = p
	}
	return e
}

// MaxNameBytes is the longest topic, event_id or source.
const MaxNameBytes = 255

func (d *decoder) name(i int, field string, v *string, bad map[string]bool) string {
	switch {
	case bad[field]:
	case v == nil:
		d.fail(i, field, "is required")
	case *v == "":
		d.fail(i, field, "must not be empty")
	case len(*v) > MaxNameBytes:
		d.fail(i, field, fmt.Sprintf("is %d bytes, more than %d", len(*v), MaxNameBytes))
	case hasControl(*v):
		d.fail(i, field, "must not contain control characters")
	default:
		return *v
	}
	return ""
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) {
			return true
		}
	}
	return false
}

func isNull(b []byte) bool { return string(bytes.TrimSpace(b)) == "null" }

func syntaxError(err error) error {
	return &SyntaxError{Reason: err.Error()}
}

// localLayouts are accepted timestamps without a zone; they are read as UTC.
var localLayouts = []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999"}

// ParseTime reads an RFC 3339 / ISO 8601 timestamp. One without a zone is
// taken as UTC. The result is in UTC.
func ParseTime(s string) (time.Time, error) {
	t, err := parseTime(s)
	if err != nil {
		return time.Time{}, err
	}
	// An offset can push a valid local time out of the years RFC 3339 can
	// write in UTC, and such a time could not be encoded again downstream.
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Errorf("%q is outside the years 0001-9999 in UTC", truncate(s, 64))
	}
	return t, nil
}

// timeShape reports whether s has the timestamp syntax openapi.json states
// (time.Parse alone also takes a comma before the fraction and any number of
// digits): the regular expression
//
//	^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?| [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?)$
//
// matched by hand, as it runs for every event (FuzzTimeShape holds the two
// equal).
func timeShape(s string) bool {
	if len(s) < len("2006-01-02T15:04:05") ||
		!digitsAt(s, 0, 4) || s[4] != '-' || !digitsAt(s, 5, 2) || s[7] != '-' || !digitsAt(s, 8, 2) ||
		(s[10] != 'T' && s[10] != ' ') ||
		!digitsAt(s, 11, 2) || s[13] != ':' || !digitsAt(s, 14, 2) || s[16] != ':' || !digitsAt(s, 17, 2) {
		return false
	}
	rest := s[19:]
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
			n++
		}
		if n == 1 || n > 10 { // one to nine digits
			return false
		}
		rest = rest[n:]
	}
	switch {
	case rest == "":
		return true
	case s[10] == ' ': // no zone after a space
		return false
	case rest == "Z":
		return true
	default:
		return len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && digitsAt(rest, 1, 2) && rest[3] == ':' && digitsAt(rest, 4, 2)
	}
}

// digitsAt reports whether s[at:at+n] are ASCII digits.
func digitsAt(s string, at, n int) bool {
	for _, c := range []byte(s[at : at+n]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func parseTime(s string) (time.Time, error) {
	if !timeShape(s) {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 timestamp (e.g. 2026-11-25T10:00:00Z)", truncate(s, 64))
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	for _, layout := range localLayouts {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an RFC 3339 timestamp (e.g. 2026-11-25T10:00:00Z)", truncate(s, 64))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
