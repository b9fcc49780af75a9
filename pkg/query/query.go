// Package query serves the stored events and the counters: GET /events,
// GET /stats and GET /topics.
package query

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/problem"
	"github.com/event-aggregator/event-aggregator/pkg/retention"
)

// Reader reads what the store holds.
type Reader interface {
	// Events returns up to limit events whose Pos is after the given one, in
	// processing order, of one topic or of all when topic is "". Positions
	// only grow: an event committed after a call is never placed before an
	// event that call returned, so paging covers every event once. Postgres
	// serves an event as soon as it is committed, in commit order.
	Events(ctx context.Context, topic string, after event.Position, limit int) ([]event.Stored, error)
	// Counts returns each topic's counters, sorted by topic, as one snapshot.
	Counts(ctx context.Context) ([]event.Counts, error)
}

// Handlers serves the read API.
type Handlers struct {
	r       Reader
	started time.Time
	log     *slog.Logger
	policy  *retention.Policy
	size    SizeFunc
}

// New returns the read handlers; started is when the process started.
func New(r Reader, started time.Time, log *slog.Logger, opts ...Option) *Handlers {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handlers{r: r, started: started, log: log}
	for _, o := range opts {
		o(h)
	}
	return h
}

const (
	defaultLimit = 100
	maxLimit     = 1000
)

// eventJSON is an event as GET /events returns it.
type eventJSON struct {
	Topic       string          `json:"topic"`
	EventID     string          `json:"event_id"`
	Timestamp   time.Time       `json:"timestamp"`
	Source      string          `json:"source"`
	Payload     json.RawMessage `json:"payload"`
	ProcessedAt time.Time       `json:"processed_at"`
}

type eventsPage struct {
	Count      int         `json:"count"`
	Events     []eventJSON `json:"events"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

// Events serves GET /events?topic=&limit=&cursor=.
func (h *Handlers) Events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			problem.Write(w, http.StatusBadRequest, "limit must be an integer from 1 to 1000", nil)
			return
		}
		limit = n
	}
	var after event.Position
	if c := q.Get("cursor"); c != "" {
		pos, ok := decodeCursor(c)
		if !ok {
			problem.Write(w, http.StatusBadRequest, "cursor is not one this API returned", nil)
			return
		}
		after = pos
	}
	topic := q.Get("topic")
	if len(topic) > event.MaxNameBytes {
		problem.Write(w, http.StatusBadRequest, "topic is longer than 255 bytes", nil)
		return
	}
	g := auth.FromContext(r.Context())
	if topic != "" && !g.Topic(topic) {
		problem.Write(w, http.StatusForbidden, "this key may not read this topic", nil)
		return
	}
	rows, next, err := h.page(r.Context(), g, topic, after, limit)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	page := eventsPage{Events: make([]eventJSON, 0, len(rows))}
	if next != nil {
		page.NextCursor = encodeCursor(*next)
	}
	for _, e := range rows {
		page.Events = append(page.Events, eventJSON{
			Topic: e.Topic, EventID: e.EventID, Timestamp: e.Timestamp, Source: e.Source,
			Payload: e.Payload, ProcessedAt: e.ProcessedAt,
		})
	}
	page.Count = len(page.Events)
	b, err := marshalPage(page)
	if err != nil {
		h.log.ErrorContext(r.Context(), "encode response", "path", r.URL.Path, "err", err)
		problem.Write(w, http.StatusInternalServerError, "the response cannot be encoded", nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// eventMeta is an event without its payload.
type eventMeta struct {
	Topic       string    `json:"topic"`
	EventID     string    `json:"event_id"`
	Timestamp   time.Time `json:"timestamp"`
	Source      string    `json:"source"`
	ProcessedAt time.Time `json:"processed_at"`
}

// marshalPage encodes a page with each payload exactly as stored, which is
// as it was published: encoding/json would compact it and escape <, > and &.
func marshalPage(p eventsPage) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	b.WriteString(`{"count":` + strconv.Itoa(p.Count) + `,"events":[`)
	for i, e := range p.Events {
		if i > 0 {
			b.WriteByte(',')
		}
		if !json.Valid(e.Payload) {
			return nil, fmt.Errorf("event %q/%q: stored payload is not JSON", e.Topic, e.EventID)
		}
		if err := enc.Encode(eventMeta{Topic: e.Topic, EventID: e.EventID, Timestamp: e.Timestamp,
			Source: e.Source, ProcessedAt: e.ProcessedAt}); err != nil {
			return nil, err
		}
		b.Truncate(b.Len() - 2) // the encoder's "}\n"
		b.WriteString(`,"payload":`)
		b.Write(e.Payload)
		b.WriteByte('}')
	}
	b.WriteByte(']')
	if p.NextCursor != "" {
		b.WriteString(`,"next_cursor":"` + p.NextCursor + `"`) // base64url: nothing to escape
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// Stats is the body of GET /stats.
type Stats struct {
	Received   int64     `json:"received"`
	Unique     int64     `json:"unique_processed"`
	Duplicates int64     `json:"duplicate_dropped"`
	Topics     []string  `json:"topics"`
	Uptime     float64   `json:"uptime"`
	StartedAt  time.Time `json:"started_at"`

	// Set with WithRetention: Go duration strings, null for forever.
	Retention       Duration            `json:"retention,omitzero"`
	RetentionTopics map[string]Duration `json:"retention_topics,omitzero"`
	DedupWindow     Duration            `json:"dedup_window,omitzero"`
	// Set with WithSize, for keys that may read every topic.
	StoredEvents *int64 `json:"stored_events,omitempty"`
	StoreBytes   *int64 `json:"store_bytes,omitempty"`
}

// Stats serves GET /stats.
func (h *Handlers) Stats(w http.ResponseWriter, r *http.Request) {
	counts, err := h.r.Counts(r.Context())
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	g := auth.FromContext(r.Context())
	counts = readable(g, counts)
	s := Stats{Topics: make([]string, 0, len(counts)), StartedAt: h.started.UTC(),
		Uptime: time.Since(h.started).Seconds()}
	for _, c := range counts {
		s.Received += c.Received
		s.Unique += c.Unique
		s.Duplicates += c.Duplicates
		s.Topics = append(s.Topics, c.Topic)
	}
	// The contract promises sorted topics whatever order a store keeps.
	slices.Sort(s.Topics)
	if err := h.addRetention(r.Context(), g, &s); err != nil {
		h.unavailable(w, r, err)
		return
	}
	h.writeJSON(w, r, s)
}

// Topics serves GET /topics: each topic's counters.
func (h *Handlers) Topics(w http.ResponseWriter, r *http.Request) {
	counts, err := h.r.Counts(r.Context())
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	counts = readable(auth.FromContext(r.Context()), counts)
	if counts == nil {
		counts = []event.Counts{}
	}
	h.writeJSON(w, r, map[string]any{"topics": counts})
}

func (h *Handlers) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.log.WarnContext(r.Context(), "read failed", "path", r.URL.Path, "err", err)
	w.Header().Set("Retry-After", "1")
	problem.Write(w, http.StatusServiceUnavailable, "the store cannot be read now; retry", nil)
}

// writeJSON encodes v before sending anything, so a value that cannot be
// encoded (a time past year 9999) gets a 500, not a 200 with a cut body.
func (h *Handlers) writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		h.log.ErrorContext(r.Context(), "encode response", "path", r.URL.Path, "err", err)
		problem.Write(w, http.StatusInternalServerError, "the response cannot be encoded", nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

// A cursor is the position of the last returned event, opaque to clients:
// "v2:<tx>:<seq>". "v1:<seq>" cursors, handed out before positions had a
// transaction part, still work: they mean (0, seq), where the rows stored
// before the change stand.
func encodeCursor(p event.Position) string {
	return base64.RawURLEncoding.EncodeToString(
		[]byte("v2:" + strconv.FormatInt(p.Tx, 10) + ":" + strconv.FormatInt(p.Seq, 10)))
}

func decodeCursor(c string) (event.Position, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return event.Position{}, false
	}
	s := string(b)
	if rest, ok := strings.CutPrefix(s, "v1:"); ok {
		seq, ok := parseNonNegative(rest)
		return event.Position{Seq: seq}, ok
	}
	rest, ok := strings.CutPrefix(s, "v2:")
	if !ok {
		return event.Position{}, false
	}
	txs, seqs, ok := strings.Cut(rest, ":")
	if !ok {
		return event.Position{}, false
	}
	tx, ok1 := parseNonNegative(txs)
	seq, ok2 := parseNonNegative(seqs)
	return event.Position{Tx: tx, Seq: seq}, ok1 && ok2
}

// parseNonNegative accepts decimal digits only (no sign) up to MaxInt64.
func parseNonNegative(s string) (int64, bool) {
	n, err := strconv.ParseUint(s, 10, 63)
	return int64(n), err == nil
}
