package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits bound what one publish body may hold.
type Limits struct {
	MaxEvents       int // most events in one body
	MaxPayloadBytes int // largest encoded payload of one event
}

// DefaultLimits are the limits of docs/architecture.md, "HTTP contract".
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
// empty one; a field of the wrong JSON type is reported by the decoder.
type wire struct {
	Topic     *string         `json:"topic"`
	EventID   *string         `json:"event_id"`
	Timestamp *string         `json:"timestamp"`
	Source    *string         `json:"source"`
	Payload   json.RawMessage `json:"payload"`
}

// envelope is a JSON object body: either one event or {"events": [...]}.
type envelope struct {
	wire
	Events json.RawMessage `json:"events"`
}

// Decode parses a whole publish body into valid events. The request is all or
// nothing: any broken rule fails the whole body, with every broken rule listed
// (up to a cap) in a *ValidationError. Other errors are *SyntaxError or
// *TooManyError.
func Decode(body []byte, f Format, lim Limits) ([]Event, error) {
	// JSON text must be UTF-8 (RFC 8259); encoding/json would silently replace
	// bad bytes, and an event must be stored as sent or refused.
	if !utf8.Valid(body) {
		return nil, &SyntaxError{Reason: "body is not valid UTF-8"}
	}
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
		var env envelope
		if err := json.Unmarshal(trimmed, &env); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field != "events" && !strings.HasPrefix(te.Field, "events.") {
				// A single event with a field of the wrong type: a rule
				// broken, not an unparseable body.
				d.n = 1
				d.fieldTypeError(0, te)
				d.validateRest(&env.wire, te)
				return nil
			}
			return syntaxError(err)
		}
		if env.Events != nil && !isNull(env.Events) {
			if t := bytes.TrimLeft(env.Events, " \t\r\n"); len(t) == 0 || t[0] != '[' {
				return &SyntaxError{Reason: `"events" must be an array`}
			}
			return d.array(env.Events)
		}
		return d.add(&env.wire)
	default:
		return &SyntaxError{Reason: "body must be a JSON object or array"}
	}
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
		var w wire
		if err := dec.Decode(&w); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				d.fieldTypeError(d.n-1, te)
				d.validateRest(&w, te)
				continue
			}
			return syntaxError(err)
		}
		if err := d.check(&w); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // ']'
		return syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return &SyntaxError{Reason: "unexpected data after the JSON value"}
	}
	return nil
}

func (d *decoder) ndjson(body []byte) error {
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if err := d.count(); err != nil {
			return err
		}
		if line[0] != '{' {
			return &SyntaxError{Reason: fmt.Sprintf("line of event %d is not a JSON object", d.n-1)}
		}
		var w wire
		if err := json.Unmarshal(line, &w); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				d.fieldTypeError(d.n-1, te)
				d.validateRest(&w, te)
				continue
			}
			return &SyntaxError{Reason: fmt.Sprintf("event %d: %v", d.n-1, err)}
		}
		if err := d.check(&w); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) count() error {
	d.n++
	if d.lim.MaxEvents > 0 && d.n > d.lim.MaxEvents {
		return &TooManyError{Max: d.lim.MaxEvents}
	}
	return nil
}

// add validates a lone event (the single-object body).
func (d *decoder) add(w *wire) error {
	if err := d.count(); err != nil {
		return err
	}
	return d.check(w)
}

func (d *decoder) check(w *wire) error {
	e, ok := d.validate(d.n-1, w)
	if ok && len(d.errs) == 0 {
		d.events = append(d.events, e)
	}
	return nil
}

func (d *decoder) fail(index int, field, msg string) {
	if len(d.errs) < maxReportedErrors {
		d.errs = append(d.errs, FieldError{Index: index, Field: field, Message: msg})
	}
}

func (d *decoder) fieldTypeError(index int, te *json.UnmarshalTypeError) {
	field := te.Field
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		field = field[i+1:]
	}
	if field == "" {
		d.fail(index, "", "event must be a JSON object")
		return
	}
	d.fail(index, field, "must be a "+expectedType(field))
}

// validateRest checks the other fields of an event whose field te had the
// wrong type, so the client learns every broken rule at once.
func (d *decoder) validateRest(w *wire, te *json.UnmarshalTypeError) {
	if te.Field == "" {
		return // not an object at all
	}
	field := te.Field[strings.LastIndexByte(te.Field, '.')+1:]
	placeholder := "x"
	switch field {
	case "topic":
		w.Topic = &placeholder
	case "event_id":
		w.EventID = &placeholder
	case "source":
		w.Source = &placeholder
	case "timestamp":
		ts := "2000-01-01T00:00:00Z"
		w.Timestamp = &ts
	case "payload":
		w.Payload = nil
	}
	d.validate(d.n-1, w)
}

func expectedType(field string) string {
	if field == "payload" {
		return "JSON object"
	}
	return "string"
}

// validate applies the rules of docs/architecture.md ("HTTP contract") to one event.
func (d *decoder) validate(i int, w *wire) (Event, bool) {
	before := len(d.errs)
	var e Event
	e.Topic = d.name(i, "topic", w.Topic)
	e.EventID = d.name(i, "event_id", w.EventID)
	e.Source = d.name(i, "source", w.Source)
	if w.Timestamp == nil {
		d.fail(i, "timestamp", "is required")
	} else if ts, err := ParseTime(*w.Timestamp); err != nil {
		d.fail(i, "timestamp", err.Error())
	} else {
		e.Timestamp = ts
	}
	switch p := bytes.TrimSpace(w.Payload); {
	case len(p) == 0 || isNull(p):
		e.Payload = json.RawMessage(`{}`)
	case p[0] != '{':
		d.fail(i, "payload", "must be a JSON object")
	case d.lim.MaxPayloadBytes > 0 && len(p) > d.lim.MaxPayloadBytes:
		d.fail(i, "payload", fmt.Sprintf("is %d bytes, more than the limit of %d", len(p), d.lim.MaxPayloadBytes))
	default:
		e.Payload = p
	}
	return e, len(d.errs) == before
}

// MaxNameBytes is the longest topic, event_id or source.
const MaxNameBytes = 255

func (d *decoder) name(i int, field string, v *string) string {
	switch {
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

func parseTime(s string) (time.Time, error) {
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
