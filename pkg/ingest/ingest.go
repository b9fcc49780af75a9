// Package ingest is the POST /publish handler. It decodes and validates a
// body, hands the events to a Publisher and answers 202 only once the
// Publisher says they are durable.
package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/event-aggregator/event-aggregator/pkg/auth"
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
	// MaxInflightBytes bounds the bodies held at once by all requests
	// (default 16 × MaxBodyBytes): past it, requests wait up to Timeout and
	// then get 503, so memory stays bounded however many clients send.
	MaxInflightBytes int64
	// Rate bounds how fast each API key may publish.
	Rate RateLimit
	// Registerer gets the rate limit's metrics; may be nil.
	Registerer prometheus.Registerer
}

// Observer hears about accepted events (metrics). Optional.
type Observer interface {
	Accepted(ctx context.Context, n int)
}

// Handler serves POST /publish.
type Handler struct {
	pub      Publisher
	opts     Options
	log      *slog.Logger
	obs      Observer
	inflight *semaphore.Weighted
	limits   *limiters // nil: no rate limit
}

// New returns the publish handler.
func New(pub Publisher, opts Options, log *slog.Logger, obs Observer) *Handler {
	if opts.MaxInflightBytes <= 0 {
		opts.MaxInflightBytes = 16 * opts.MaxBodyBytes
	}
	opts.MaxInflightBytes = max(opts.MaxInflightBytes, opts.MaxBodyBytes)
	return &Handler{pub: pub, opts: opts, log: log, obs: obs,
		inflight: semaphore.NewWeighted(opts.MaxInflightBytes),
		limits:   newLimiters(opts.Rate, opts.Registerer)}
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
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	// Reserve the body's bytes before reading it; a body of unknown length
	// may be as large as the limit.
	weight := h.opts.MaxBodyBytes
	if r.ContentLength >= 0 {
		weight = r.ContentLength
	}
	if err := h.inflight.Acquire(ctx, weight); err != nil {
		h.unavailable(ctx, w, 0, fmt.Errorf("wait for memory: %w", err))
		return
	}
	defer h.inflight.Release(weight)
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
	if !h.allowed(w, r, events) {
		return
	}

	if len(events) > 0 {
		if err := h.pub.Publish(ctx, events); err != nil {
			h.unavailable(ctx, w, len(events), err)
			return
		}
	}
	if h.obs != nil {
		h.obs.Accepted(ctx, len(events))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(acceptedBody(len(events)))
}

// acceptedBody is the 202's body, {"accepted":n} and a newline as
// encoding/json writes it, without encoding a map per request.
func acceptedBody(n int) []byte {
	b := make([]byte, 0, 32)
	b = append(b, `{"accepted":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, "}\n"...)
}

// allowed checks the events against the key's topics and rate limit, and
// answers 403, 413 or 429 when they go beyond.
func (h *Handler) allowed(w http.ResponseWriter, r *http.Request, events []event.Event) bool {
	g := auth.FromContext(r.Context())
	if !g.EveryTopic() {
		var denied []event.FieldError
		for i, e := range events {
			if !g.Topic(e.Topic) && len(denied) < 100 {
				denied = append(denied, event.FieldError{Index: i, Field: "topic",
					Message: fmt.Sprintf("this key may not publish to topic %q", e.Topic)})
			}
		}
		if len(denied) > 0 {
			problem.Write(w, http.StatusForbidden, "this key may not publish to some of these topics; nothing was accepted", denied)
			return false
		}
	}
	if h.limits == nil || len(events) == 0 {
		return true
	}
	wait, ok := h.limits.take(g.Name, len(events), time.Now())
	switch {
	case !ok:
		problem.Write(w, http.StatusRequestEntityTooLarge, fmt.Sprintf(
			"%d events are more than the rate limit lets one key send at once (%d); send smaller requests",
			len(events), h.limits.burst), nil)
		return false
	case wait > 0:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
		problem.Write(w, http.StatusTooManyRequests, fmt.Sprintf(
			"this key may publish %g events per second; nothing was accepted, retry later", float64(h.limits.limit)), nil)
		return false
	}
	return true
}

// unavailable answers 503: nothing was accepted, or the client cannot know.
// It retries, and dedup makes the retry safe.
func (h *Handler) unavailable(ctx context.Context, w http.ResponseWriter, n int, err error) {
	h.log.WarnContext(ctx, "publish failed", "events", n, "err", err)
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	problem.Write(w, http.StatusServiceUnavailable, "the events could not be made durable now; retry", nil)
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
		// Grow as bytes arrive beyond 1 MiB, not on the client's word.
		buf.Grow(int(min(r.ContentLength, 1<<20)) + 1)
	}
	_, err := io.Copy(&buf, rd)
	return buf.Bytes(), err
}
