package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/api"
	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/bus/local"
	"github.com/event-aggregator/event-aggregator/pkg/claim/memory"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/ingest"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/query"
	"github.com/event-aggregator/event-aggregator/pkg/store/sqlite"
)

// faults are the failures the front injects, set before the first request.
// n counts /publish requests from 1.
type faults struct {
	unavailableFirst int              // requests 1..k answer 503 Retry-After: 0 and reach nothing
	storeThenFail    func(n int) bool // stored by the aggregator, then answered 500
	storeThenHangUp  func(n int) bool // stored by the aggregator, then the connection is closed unanswered
	alwaysFail       func(ids []string) bool
	loseEventID      string // taken out of the request: acknowledged, never stored
	apiKey           string // the aggregator's only key
	onPublish        func(n int)
}

// front is the real all-in-one aggregator (SQLite in a temporary directory,
// in-memory claims, the in-process bus), served behind a front that injects
// faults and observes what the publisher sends.
type front struct {
	faults
	agg http.Handler

	mu        sync.Mutex
	requests  int
	failedOut int64 // events of requests stored but answered with an error
	// first is the first copy of each key seen, compacted, to compare
	// re-sends with.
	first          map[event.Key][]byte
	inRequestDups  int // duplicates whose first copy came in the same request
	copyMismatches int // duplicates whose bytes differ from their first copy
	singleObjects  int
	contentTypes   map[string]int
	statsReads     int
}

// newAggregator starts the aggregator and its front; configure sets the
// faults.
func newAggregator(t *testing.T, configure func(*faults)) (*front, *httptest.Server) {
	t.Helper()
	f := &front{first: map[event.Key][]byte{}, contentTypes: map[string]int{}}
	if configure != nil {
		configure(&f.faults)
	}
	store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	log := slog.New(slog.DiscardHandler)
	proc := process.New(memory.New("publisher-test", 30*time.Second, time.Hour, 1<<16), store, log, nil)
	f.agg = api.Handler(api.Routes{
		Publish: ingest.New(local.New(proc), ingest.Options{
			MaxBodyBytes: 16 << 20, Limits: event.DefaultLimits, Timeout: 10 * time.Second,
		}, log, nil),
		Query: query.New(store, time.Now(), log),
		Keys:  auth.NewKeys([]string{f.apiKey}),
	})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /publish", f.publish)
	mux.HandleFunc("GET /stats", f.stats)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *front) publish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	raws, single := splitBody(ct, body)

	f.mu.Lock()
	f.requests++
	n := f.requests
	f.contentTypes[ct]++
	if single {
		f.singleObjects++
	}
	ids := f.observe(raws)
	f.mu.Unlock()
	if f.onPublish != nil {
		f.onPublish(n)
	}

	if n <= f.unavailableFirst || (f.alwaysFail != nil && f.alwaysFail(ids)) {
		w.Header().Set("Retry-After", "0")
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	if f.loseEventID != "" && slices.Contains(ids, f.loseEventID) {
		body, ct = without(raws, f.loseEventID), "application/json"
	}
	fwd := r.Clone(r.Context())
	fwd.Body = io.NopCloser(bytes.NewReader(body))
	fwd.ContentLength = int64(len(body))
	fwd.Header.Set("Content-Type", ct)

	hangUp := f.storeThenHangUp != nil && f.storeThenHangUp(n)
	fail := f.storeThenFail != nil && f.storeThenFail(n)
	if !hangUp && !fail {
		f.agg.ServeHTTP(w, fwd)
		return
	}
	rec := httptest.NewRecorder()
	f.agg.ServeHTTP(rec, fwd)
	if rec.Code != http.StatusAccepted {
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	f.mu.Lock()
	f.failedOut += int64(len(raws))
	f.mu.Unlock()
	if hangUp {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	http.Error(w, "stored, then failed", http.StatusInternalServerError)
}

// observe records what the events of one request say about the publisher
// and returns their event IDs. f.mu is held.
func (f *front) observe(raws []json.RawMessage) []string {
	ids := make([]string, 0, len(raws))
	inRequest := map[event.Key]bool{}
	for _, raw := range raws {
		var e struct {
			Topic   string `json:"topic"`
			EventID string `json:"event_id"`
		}
		var compact bytes.Buffer
		if json.Unmarshal(raw, &e) != nil || json.Compact(&compact, raw) != nil {
			continue // the aggregator answers it
		}
		ids = append(ids, e.EventID)
		k := event.Key{Topic: e.Topic, EventID: e.EventID}
		if first, ok := f.first[k]; ok {
			if !bytes.Equal(first, compact.Bytes()) {
				f.copyMismatches++
			}
			if inRequest[k] {
				f.inRequestDups++
			}
			continue
		}
		inRequest[k] = true
		f.first[k] = compact.Bytes()
	}
	return ids
}

func (f *front) stats(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.statsReads++
	f.mu.Unlock()
	f.agg.ServeHTTP(w, r)
}

// splitBody returns the event objects of a publish body: NDJSON lines, an
// array's items, or the one object.
func splitBody(contentType string, body []byte) (raws []json.RawMessage, single bool) {
	if contentType == "application/x-ndjson" {
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
				raws = append(raws, slices.Clone(line))
			}
		}
		return raws, false
	}
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
		_ = json.Unmarshal(body, &raws)
		return raws, false
	}
	return []json.RawMessage{body}, true
}

// without returns the events as a JSON array, less those with the event ID.
func without(raws []json.RawMessage, id string) []byte {
	kept := make([]json.RawMessage, 0, len(raws))
	for _, raw := range raws {
		var e struct {
			EventID string `json:"event_id"`
		}
		if json.Unmarshal(raw, &e) == nil && e.EventID == id {
			continue
		}
		kept = append(kept, raw)
	}
	out, _ := json.Marshal(kept)
	return out
}

// counts is what the front observed and what the aggregator's /stats says.
type counts struct {
	requests                      int
	received, unique, dropped     int64
	failedOut                     int64
	inRequestDups, copyMismatches int
	singleObjects, topics         int
	contentTypes                  map[string]int
}

// snapshot reads the aggregator's counters (not counted as a publisher's
// read of /stats) and the front's observations.
func (f *front) snapshot(t *testing.T) counts {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/stats", nil)
	if f.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+f.apiKey)
	}
	rec := httptest.NewRecorder()
	f.agg.ServeHTTP(rec, req)
	var st struct {
		Received   int64    `json:"received"`
		Unique     int64    `json:"unique_processed"`
		Duplicates int64    `json:"duplicate_dropped"`
		Topics     []string `json:"topics"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &st) != nil {
		t.Fatalf("GET /stats: %d %s", rec.Code, rec.Body)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return counts{
		requests: f.requests, received: st.Received, unique: st.Unique, dropped: st.Duplicates,
		failedOut: f.failedOut, inRequestDups: f.inRequestDups, copyMismatches: f.copyMismatches,
		singleObjects: f.singleObjects, topics: len(st.Topics), contentTypes: maps.Clone(f.contentTypes),
	}
}
