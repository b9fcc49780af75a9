package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeAggregator implements the /publish and /stats contract (docs/architecture.md, "HTTP contract") with a
// real dedup map, and injects failures on chosen requests.
type fakeAggregator struct {
	// Failure injection, set before the first request. n counts /publish requests from 1.
	unavailableFirst int              // requests 1..k answer 503 Retry-After: 0, storing nothing
	storeThenFail    func(n int) bool // stored, then answered 500 without Retry-After
	storeThenHangUp  func(n int) bool // stored, then the connection is closed unanswered
	alwaysFail       func(events []wireEvent) bool
	loseEventID      string // acknowledged but never stored nor counted
	apiKey           string
	onPublish        func(n int)

	mu        sync.Mutex
	requests  int
	stored    map[[2]string][]byte // first copy, compacted
	topics    map[string]bool
	received  int64
	unique    int64
	dropped   int64
	started   time.Time
	failedOut int64 // events of requests stored but answered with an error
	// Observations.
	inRequestDups  int // duplicates whose first copy came in the same request
	copyMismatches int // duplicates whose bytes differ from the stored copy
	singleObjects  int
	contentTypes   map[string]int
	statsReads     int
}

type wireEvent struct {
	Topic     string          `json:"topic"`
	EventID   string          `json:"event_id"`
	Timestamp string          `json:"timestamp"`
	Source    string          `json:"source"`
	Payload   json.RawMessage `json:"payload"`
	raw       []byte
}

func newFake(t *testing.T, configure func(*fakeAggregator)) (*fakeAggregator, *httptest.Server) {
	t.Helper()
	f := &fakeAggregator{
		stored: map[[2]string][]byte{}, topics: map[string]bool{},
		contentTypes: map[string]int{}, started: time.Now(),
	}
	if configure != nil {
		configure(f)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /publish", f.publish)
	mux.HandleFunc("GET /stats", f.stats)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeAggregator) authorized(w http.ResponseWriter, r *http.Request) bool {
	if f.apiKey != "" && r.Header.Get("Authorization") != "Bearer "+f.apiKey {
		http.Error(w, "missing or wrong API key", http.StatusUnauthorized)
		return false
	}
	return true
}

func (f *fakeAggregator) publish(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	events, single, err := decodeEvents(ct, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}

	f.mu.Lock()
	f.requests++
	n := f.requests
	f.contentTypes[ct]++
	if single {
		f.singleObjects++
	}
	if f.onPublish != nil {
		f.onPublish(n)
	}
	if n <= f.unavailableFirst || (f.alwaysFail != nil && f.alwaysFail(events)) {
		f.mu.Unlock()
		w.Header().Set("Retry-After", "0")
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	inRequest := map[[2]string]bool{}
	for _, e := range events {
		if e.EventID == f.loseEventID {
			continue
		}
		k := [2]string{e.Topic, e.EventID}
		f.received++
		if first, ok := f.stored[k]; ok {
			f.dropped++
			if !bytes.Equal(first, e.raw) {
				f.copyMismatches++
			}
			if inRequest[k] {
				f.inRequestDups++
			}
			continue
		}
		inRequest[k] = true
		f.stored[k] = e.raw
		f.topics[e.Topic] = true
		f.unique++
	}
	hangUp := f.storeThenHangUp != nil && f.storeThenHangUp(n)
	fail := f.storeThenFail != nil && f.storeThenFail(n)
	if hangUp || fail {
		f.failedOut += int64(len(events))
	}
	f.mu.Unlock()

	switch {
	case hangUp:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	case fail:
		http.Error(w, "stored, then failed", http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"accepted": `+strconv.Itoa(len(events))+`}`)
	}
}

// decodeEvents accepts an object, an array or NDJSON, and checks each event.
func decodeEvents(contentType string, body []byte) (events []wireEvent, single bool, err error) {
	var raws []json.RawMessage
	switch {
	case contentType == "application/x-ndjson":
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
				raws = append(raws, slices.Clone(line))
			}
		}
		if err := sc.Err(); err != nil {
			return nil, false, err
		}
	case contentType != "application/json":
		return nil, false, fmt.Errorf("content type %q", contentType)
	case bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")):
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, false, err
		}
	default:
		raws, single = []json.RawMessage{body}, true
	}
	for _, raw := range raws {
		var e wireEvent
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, false, err
		}
		if _, err := time.Parse(time.RFC3339Nano, e.Timestamp); err != nil {
			return nil, false, err
		}
		if e.Topic == "" || e.EventID == "" || e.Source == "" || !bytes.HasPrefix(e.Payload, []byte("{")) {
			return nil, false, fmt.Errorf("incomplete event %s", raw)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, false, err
		}
		e.raw = buf.Bytes()
		events = append(events, e)
	}
	return events, single, nil
}

func (f *fakeAggregator) stats(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	f.mu.Lock()
	f.statsReads++
	topics := make([]string, 0, len(f.topics))
	for t := range f.topics {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	out := map[string]any{
		"received": f.received, "unique_processed": f.unique, "duplicate_dropped": f.dropped,
		"topics": topics, "uptime": time.Since(f.started).Seconds(), "pending": 0,
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// snapshot returns the counters under the lock.
func (f *fakeAggregator) snapshot() fakeCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fakeCounts{
		requests: f.requests, received: f.received, unique: f.unique, dropped: f.dropped,
		failedOut: f.failedOut, inRequestDups: f.inRequestDups, copyMismatches: f.copyMismatches,
		singleObjects: f.singleObjects, topics: len(f.topics), contentTypes: maps.Clone(f.contentTypes),
	}
}

type fakeCounts struct {
	requests                      int
	received, unique, dropped     int64
	failedOut                     int64
	inRequestDups, copyMismatches int
	singleObjects, topics         int
	contentTypes                  map[string]int
}
