// Package query serves the stored events and the counters: GET /events,
// GET /stats and GET /topics.
package query

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/problem"
)

// Reader reads what the store holds.
type Reader interface {
	// Events returns up to limit events with Seq > after in processing
	// order, of one topic or of all when topic is "".
	Events(ctx context.Context, topic string, after int64, limit int) ([]event.Stored, error)
	// Counts returns each topic's counters, sorted by topic, as one snapshot.
	Counts(ctx context.Context) ([]event.Counts, error)
}

// Handlers serves the read API.
type Handlers struct {
	r       Reader
	started time.Time
	log     *slog.Logger
}

// New returns the read handlers; started is when the process started.
func New(r Reader, started time.Time, log *slog.Logger) *Handlers {
	return &Handlers{r: r, started: started, log: log}
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
	var after int64
	if c := q.Get("cursor"); c != "" {
		seq, ok := decodeCursor(c)
		if !ok {
			problem.Write(w, http.StatusBadRequest, "cursor is not one this API returned", nil)
			return
		}
		after = seq
	}
	topic := q.Get("topic")
	if len(topic) > event.MaxNameBytes {
		problem.Write(w, http.StatusBadRequest, "topic is longer than 255 bytes", nil)
		return
	}
	// One more than asked tells whether another page exists.
	rows, err := h.r.Events(r.Context(), topic, after, limit+1)
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	page := eventsPage{Events: make([]eventJSON, 0, min(len(rows), limit))}
	if len(rows) > limit {
		rows = rows[:limit]
		page.NextCursor = encodeCursor(rows[len(rows)-1].Seq)
	}
	for _, e := range rows {
		page.Events = append(page.Events, eventJSON{
			Topic: e.Topic, EventID: e.EventID, Timestamp: e.Timestamp, Source: e.Source,
			Payload: e.Payload, ProcessedAt: e.ProcessedAt,
		})
	}
	page.Count = len(page.Events)
	writeJSON(w, page)
}

// Stats is the body of GET /stats.
type Stats struct {
	Received   int64     `json:"received"`
	Unique     int64     `json:"unique_processed"`
	Duplicates int64     `json:"duplicate_dropped"`
	Topics     []string  `json:"topics"`
	Uptime     float64   `json:"uptime"`
	StartedAt  time.Time `json:"started_at"`
}

// Stats serves GET /stats.
func (h *Handlers) Stats(w http.ResponseWriter, r *http.Request) {
	counts, err := h.r.Counts(r.Context())
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	s := Stats{Topics: make([]string, 0, len(counts)), StartedAt: h.started.UTC(),
		Uptime: time.Since(h.started).Seconds()}
	for _, c := range counts {
		s.Received += c.Received
		s.Unique += c.Unique
		s.Duplicates += c.Duplicates
		s.Topics = append(s.Topics, c.Topic)
	}
	writeJSON(w, s)
}

// Topics serves GET /topics: each topic's counters.
func (h *Handlers) Topics(w http.ResponseWriter, r *http.Request) {
	counts, err := h.r.Counts(r.Context())
	if err != nil {
		h.unavailable(w, r, err)
		return
	}
	if counts == nil {
		counts = []event.Counts{}
	}
	writeJSON(w, map[string]any{"topics": counts})
}

func (h *Handlers) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	h.log.WarnContext(r.Context(), "read failed", "path", r.URL.Path, "err", err)
	w.Header().Set("Retry-After", "1")
	problem.Write(w, http.StatusServiceUnavailable, "the store cannot be read now; retry", nil)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// A cursor is the last returned sequence number, opaque to clients.
func encodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1:" + strconv.FormatInt(seq, 10)))
}

func decodeCursor(c string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 4 || string(b[:3]) != "v1:" {
		return 0, false
	}
	seq, err := strconv.ParseInt(string(b[3:]), 10, 64)
	return seq, err == nil && seq >= 0
}
