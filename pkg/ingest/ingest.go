// Package ingest is the POST /publish handler. It decodes and validates a
// body, hands the events to a Publisher and answers 202 only once the
// Publisher says they are durable.
package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/problem"
)

// Publisher makes events durable: committed to the store (all-in-one) or
// acknowledged by every in-sync Kafka replica (distributed). All or nothing:
// on error the caller must assume any subset may have been kept.
type Publisher interface {
	Publish(ctx context.Context, events []event.Event) error
}

// Options bound a request.
type Options struct {
	MaxBodyBytes int64
	Limits       event.Limits
	Timeout      time.Duration // how long to wait for the Publisher before 503
}

// Observer hears about accepted events (metrics). Optional.
type Observer interface {
	Accepted(ctx context.Context, n int)
}

// Handler serves POST /publish.
type Handler struct {
	pub  Publisher
	opts Options
	log  *slog.Logger
	obs  Observer
}

// New returns the publish handler.
func New(pub Publisher, opts Options, log *slog.Logger, obs Observer) *Handler {
	return &Handler{pub: pub, opts: opts, log: log, obs: obs}
}

// retryAfter is what a client should wait after a 503, in seconds.
const retryAfter = 1

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format, ok := contentFormat(r.Header.Get("Content-Type"))
	if !ok {
		problem.Write(w, http.StatusUnsupportedMediaType,
			"Content-Type must be application/json or application/x-ndjson", nil)
		return
	}
	if r.ContentLength > h.opts.MaxBodyBytes {
		problem.Write(w, http.StatusRequestEntityTooLarge, h.tooLarge(), nil)
		return
	}
	body, err := readBody(w, r, h.opts.MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			problem.Write(w, http.StatusRequestEntityTooLarge, h.tooLarge(), nil)
			return
		}
		problem.Write(w, http.StatusBadRequest, "reading the body failed: "+err.Error(), nil)
		return
	}
	events, err := event.Decode(body, format, h.opts.Limits)
	if err != nil {
		writeDecodeError(w, err)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	if err := h.pub.Publish(ctx, events); err != nil {
		// Nothing was accepted, or the client cannot know: it retries and
		// dedup makes the retry safe.
		h.log.WarnContext(ctx, "publish failed", "events", len(events), "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
		problem.Write(w, http.StatusServiceUnavailable, "the events could not be made durable now; retry", nil)
		return
	}
	if h.obs != nil {
		h.obs.Accepted(ctx, len(events))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]int{"accepted": len(events)})
}

func (h *Handler) tooLarge() string {
	return fmt.Sprintf("the body is larger than %d bytes", h.opts.MaxBodyBytes)
}

func writeDecodeError(w http.ResponseWriter, err error) {
	var (
		syntax  *event.SyntaxError
		tooMany *event.TooManyError
		invalid *event.ValidationError
	)
	switch {
	case errors.As(err, &invalid):
		problem.Write(w, http.StatusUnprocessableEntity, "some events are invalid; nothing was accepted", invalid.Errors)
	case errors.As(err, &tooMany):
		problem.Write(w, http.StatusRequestEntityTooLarge, tooMany.Error(), nil)
	case errors.As(err, &syntax):
		problem.Write(w, http.StatusBadRequest, syntax.Error(), nil)
	default:
		problem.Write(w, http.StatusBadRequest, err.Error(), nil)
	}
}

// contentFormat maps a Content-Type to a body format. A missing type is read
// as JSON, the common case of hand-written clients.
func contentFormat(ct string) (event.Format, bool) {
	if ct == "" {
		return event.JSON, true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, false
	}
	switch mt {
	case "application/json":
		return event.JSON, true
	case "application/x-ndjson", "application/ndjson", "application/jsonl":
		return event.NDJSON, true
	}
	return 0, false
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, limit)
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + 1)
	}
	_, err := io.Copy(&buf, rd)
	return buf.Bytes(), err
}
