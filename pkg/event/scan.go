package event

import (
	"bytes"
	"strings"
	"time"
	"unicode/utf8"
)

// The fast path: one pass over the bytes of a body, no reflection and no
// intermediate values, for bodies that break no rule. It never judges a body
// bad by itself: whenever anything is off (a syntax error, a broken rule, too
// many events, a form it does not handle), it gives up and the full decoder
// (decodeFull) decides and explains, so a refused body gets exactly the same
// answer whichever path saw it first. What the fast path accepts, the full
// decoder accepts with the same events (FuzzFastMatchesFull).

// maxDepth is the nesting the full decoder's encoding/json scanner allows;
// every value it scans lies inside the body, so a body nested no deeper is
// never refused for its depth.
const maxDepth = 10000

// maxFastMembers bounds the names of one event the fast path compares
// pairwise to find a repeated one; an event with more goes the full way.
const maxFastMembers = 64

// scanner holds the state of one fast decode.
type scanner struct {
	lim    Limits
	b      []byte // the JSON text being read: the body, or one NDJSON line
	pos    int
	n      int // events seen
	events []Event

	names []byte // decoded member names of the current event
	ends  []int  // end of each name in names
	vals  []byte // topic, event_id, source and timestamp text of the current event
	stack []byte // open containers of the value being skipped
	lone  bool   // a skipped string holds a lone surrogate escape

	// First backing arrays of the slices above, so that a usual event
	// needs no allocation for them.
	namesArr [128]byte
	endsArr  [16]int
	valsArr  [256]byte
	stackArr [32]byte
}

// decodeFast decodes a body that breaks no rule; ok is false when the body
// must go to the full decoder. body is valid UTF-8.
func decodeFast(body []byte, f Format, lim Limits) (events []Event, ok bool) {
	s := &scanner{lim: lim}
	s.names, s.ends, s.vals, s.stack = s.namesArr[:0], s.endsArr[:0], s.valsArr[:0], s.stackArr[:0]
	if f == NDJSON {
		ok = s.ndjson(body)
	} else {
		ok = s.json(body)
	}
	if !ok {
		return nil, false
	}
	return s.events, true
}

func (s *scanner) json(body []byte) bool {
	s.b = body
	s.ws()
	if s.pos >= len(s.b) {
		return false
	}
	switch s.b[s.pos] {
	case '[':
		if !s.array(1) {
			return false
		}
	case '{':
		start := s.pos
		if s.envelope() {
			if !s.array(2) {
				return false
			}
			s.ws()
			if !s.take('}') {
				return false
			}
		} else {
			s.pos = start
			if !s.count() || !s.event(1) {
				return false
			}
		}
	default:
		return false
	}
	s.ws()
	return s.pos == len(s.b)
}

// envelope reads `{"events":` and reports whether it was there; an object
// whose first name is anything else is read again as an event.
func (s *scanner) envelope() bool {
	s.pos++ // '{'
	s.ws()
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		return false
	}
	start, end, esc, ok := s.str()
	if !ok {
		return false
	}
	name := s.b[start:end]
	if esc {
		s.names = unquote(s.names[:0], name)
		name = s.names
	}
	if string(name) != "events" {
		return false
	}
	s.ws()
	if !s.take(':') {
		return false
	}
	s.ws()
	return s.pos < len(s.b) && s.b[s.pos] == '['
}

// array reads an array of event objects at s.pos.
func (s *scanner) array(depth int) bool {
	s.pos++ // '['
	s.ws()
	if s.take(']') {
		return true
	}
	for {
		if !s.count() || s.pos >= len(s.b) || s.b[s.pos] != '{' || !s.event(depth+1) {
			return false
		}
		s.ws()
		if s.take(']') {
			return true
		}
		if !s.take(',') {
			return false
		}
		s.ws()
	}
}

// ndjson splits lines exactly as the full decoder does.
func (s *scanner) ndjson(body []byte) bool {
	for line := range lines(body) {
		s.b, s.pos = line, 0
		if !s.count() || line[0] != '{' || !s.event(1) {
			return false
		}
		s.ws()
		if s.pos != len(line) {
			return false
		}
	}
	return true
}

func (s *scanner) count() bool {
	s.n++
	return s.lim.MaxEvents <= 0 || s.n <= s.lim.MaxEvents
}

// span is where a value lies in vals.
type span struct{ from, to int }

// event reads the event object at s.pos, nested depth deep in the body, and
// keeps it if it breaks no rule.
func (s *scanner) event(depth int) bool {
	if depth > maxDepth {
		return false
	}
	s.pos++ // '{'
	s.names, s.ends, s.vals = s.names[:0], s.ends[:0], s.vals[:0]
	var (
		topic, id, source, ts  span
		hasTopic, hasID        bool
		hasSource, hasTS       bool
		payload                []byte
		hasPayload             bool
		first                  = true
		nameStart, nameEnd     int
		nameEscaped, nameValid bool
	)
	for {
		s.ws()
		if first && s.take('}') {
			break
		}
		first = false
		if s.pos >= len(s.b) || s.b[s.pos] != '"' {
			return false
		}
		nameStart, nameEnd, nameEscaped, nameValid = s.str()
		if !nameValid || len(s.ends) == maxFastMembers {
			return false
		}
		from := len(s.names)
		if nameEscaped {
			s.names = unquote(s.names, s.b[nameStart:nameEnd])
		} else {
			s.names = append(s.names, s.b[nameStart:nameEnd]...)
		}
		name := s.names[from:]
		for i, prev := 0, 0; i < len(s.ends); i++ {
			if bytes.Equal(s.names[prev:s.ends[i]], name) {
				return false // repeated
			}
			prev = s.ends[i]
		}
		s.ends = append(s.ends, len(s.names))
		s.ws()
		if !s.take(':') {
			return false
		}
		s.ws()
		var ok bool
		switch string(name) {
		case "topic":
			topic, ok = s.text()
			hasTopic = true
		case "event_id":
			id, ok = s.text()
			hasID = true
		case "source":
			source, ok = s.text()
			hasSource = true
		case "timestamp":
			ts, ok = s.text()
			hasTS = true
		case "payload":
			start := s.pos
			s.lone = false
			ok = s.skip(depth) && !s.lone
			payload, hasPayload = s.b[start:s.pos], true
		default:
			ok = !foldsToReserved(name) && s.skip(depth)
		}
		if !ok {
			return false
		}
		s.ws()
		if s.take('}') {
			break
		}
		if !s.take(',') {
			return false
		}
	}
	if !hasTopic || !hasID || !hasSource || !hasTS {
		return false
	}
	for _, v := range [...]span{topic, id, source} {
		if !validName(s.vals[v.from:v.to]) {
			return false
		}
	}
	// One string holds the text of the event and its names are slices of
	// it: two allocations per event with the payload, and a key kept
	// elsewhere holds on to this event's few bytes only.
	text := string(s.vals)
	e := Event{
		Topic:   text[topic.from:topic.to],
		EventID: text[id.from:id.to],
		Source:  text[source.from:source.to],
	}
	t, err := ParseTime(text[ts.from:ts.to])
	if err != nil {
		return false
	}
	e.Timestamp = t.Truncate(time.Microsecond)
	switch {
	case !hasPayload || string(payload) == "null":
		e.Payload = []byte(`{}`)
	case payload[0] != '{':
		return false
	case s.lim.MaxPayloadBytes > 0 && len(payload) > s.lim.MaxPayloadBytes:
		return false
	default:
		// A copy: the event must not hold on to the whole body.
		e.Payload = append([]byte(nil), payload...)
	}
	s.events = append(s.events, e)
	return true
}

// text reads a string value with no lone surrogate escape, decoded into
// vals.
func (s *scanner) text() (span, bool) {
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		return span{}, false // null, or not a string
	}
	s.lone = false
	start, end, esc, ok := s.str()
	if !ok || s.lone {
		return span{}, false
	}
	from := len(s.vals)
	if esc {
		s.vals = unquote(s.vals, s.b[start:end])
	} else {
		s.vals = append(s.vals, s.b[start:end]...)
	}
	return span{from, len(s.vals)}, true
}

// validName applies the rules of topic, event_id and source to decoded
// UTF-8 text: not empty, at most MaxNameBytes, no C0 or C1 control
// character and no DEL.
func validName(v []byte) bool {
	if len(v) == 0 || len(v) > MaxNameBytes {
		return false
	}
	for i, c := range v {
		// C1 controls U+0080..U+009F are encoded C2 80..C2 9F.
		if c < 0x20 || c == 0x7f || (c == 0xc2 && i+1 < len(v) && v[i+1] < 0xa0) {
			return false
		}
	}
	return true
}

// reserved are the names an extra field may not fold to: a known field in
// another letter case, or "events".
var reserved = [...]string{"topic", "event_id", "timestamp", "source", "payload", "events"}

// maxFoldBytes bounds the UTF-8 length of a name that folds to a reserved
// one (9 letters, each at most 3 bytes when folded from a non-ASCII rune).
const maxFoldBytes = 32

func foldsToReserved(name []byte) bool {
	if len(name) > maxFoldBytes {
		return false
	}
	for _, r := range reserved {
		if strings.EqualFold(string(name), r) {
			return true
		}
	}
	return false
}

// ws skips JSON white space.
func (s *scanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\r', '\n':
			s.pos++
		default:
			return
		}
	}
}

// take consumes c if it is next.
func (s *scanner) take(c byte) bool {
	if s.pos < len(s.b) && s.b[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

// plain marks the bytes that stand for themselves inside a JSON string.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads the string at s.pos (its opening quote) and returns the bounds
// of its contents and whether they hold an escape. A lone surrogate escape
// sets s.lone.
func (s *scanner) str() (start, end int, escaped, ok bool) {
	b := s.b
	i := s.pos + 1
	start = i
	for {
		for i < len(b) && plain[b[i]] {
			i++
		}
		if i >= len(b) {
			return 0, 0, false, false
		}
		switch b[i] {
		case '"':
			s.pos = i + 1
			return start, i, escaped, true
		case '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, 0, false, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				r, ok := hex(b, i+2)
				if !ok {
					return 0, 0, false, false
				}
				i += 6
				if r >= 0xd800 && r < 0xe000 {
					if _, ok := lowAt(b, i); ok && r < 0xdc00 {
						i += 6
					} else {
						s.lone = true
					}
				}
			default:
				return 0, 0, false, false
			}
		default: // a control character
			return 0, 0, false, false
		}
	}
}

// lowAt reads a \u escape of a low surrogate at b[i:].
func lowAt(b []byte, i int) (rune, bool) {
	if i+1 >= len(b) || b[i] != '\\' || b[i+1] != 'u' {
		return 0, false
	}
	r, ok := hex(b, i+2)
	return r, ok && r >= 0xdc00 && r < 0xe000
}

// hex reads four hex digits at b[i:].
func hex(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unquote appends the text the contents of a valid JSON string spell,
// replacing a lone surrogate with U+FFFD as encoding/json does.
func unquote(dst, q []byte) []byte {
	for i := 0; i < len(q); {
		c := q[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch q[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex(q, i+2)
			i += 6
			if r >= 0xd800 && r < 0xe000 {
				if lo, ok := lowAt(q, i); r < 0xdc00 && ok {
					r = (r-0xd800)<<10 | (lo - 0xdc00) + 0x10000
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, q[i+1])
		}
		i += 2
	}
	return dst
}

// skip reads any JSON value at s.pos, nested depth deep in the body.
func (s *scanner) skip(depth int) bool {
	b := s.b
	s.stack = s.stack[:0]
	for {
		// A value is expected at s.pos.
		if s.pos >= len(b) {
			return false
		}
		closed := true
		switch c := b[s.pos]; c {
		case '{', '[':
			if depth+len(s.stack)+1 > maxDepth {
				return false
			}
			s.pos++
			s.ws()
			if s.take(c + 2) { // '}' is '{'+2, ']' is '['+2
				break
			}
			s.stack = append(s.stack, c)
			closed = false
			if c == '{' && !s.key() {
				return false
			}
		case '"':
			if _, _, _, ok := s.str(); !ok {
				return false
			}
		case 't':
			if !s.literal("true") {
				return false
			}
		case 'f':
			if !s.literal("false") {
				return false
			}
		case 'n':
			if !s.literal("null") {
				return false
			}
		default:
			if !s.number() {
				return false
			}
		}
		// After a value: close what ends here, then expect the next one.
		for closed {
			if len(s.stack) == 0 {
				return true
			}
			s.ws()
			if s.pos >= len(b) {
				return false
			}
			open := s.stack[len(s.stack)-1]
			switch c := b[s.pos]; {
			case c == open+2:
				s.pos++
				s.stack = s.stack[:len(s.stack)-1]
			case c == ',':
				s.pos++
				s.ws()
				if open == '{' && !s.key() {
					return false
				}
				closed = false
			default:
				return false
			}
		}
		s.ws()
	}
}

// key reads `"name" :` and the white space after it.
func (s *scanner) key() bool {
	if s.pos >= len(s.b) || s.b[s.pos] != '"' {
		return false
	}
	if _, _, _, ok := s.str(); !ok {
		return false
	}
	s.ws()
	if !s.take(':') {
		return false
	}
	s.ws()
	return true
}

func (s *scanner) literal(lit string) bool {
	if !bytes.HasPrefix(s.b[s.pos:], []byte(lit)) {
		return false
	}
	s.pos += len(lit)
	return true
}

// number reads a JSON number.
func (s *scanner) number() bool {
	b, i := s.b, s.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		if j := digits(b, i+1); j > i+1 {
			i = j
		} else {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if j := digits(b, i); j > i {
			i = j
		} else {
			return false
		}
	}
	s.pos = i
	return true
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}
