package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// jaegerURLs are the query API and the OTLP/HTTP endpoint of the Jaeger the
// services export to (scripts/deps/jaeger.sh up starts one on 127.0.0.1).
func jaegerURLs() (api, otlp string) {
	api, otlp = os.Getenv("AGGREGATOR_TEST_JAEGER_URL"), os.Getenv("AGGREGATOR_TEST_OTLP_ENDPOINT")
	if api == "" {
		api = "http://127.0.0.1:16686"
	}
	if otlp == "" {
		otlp = "http://127.0.0.1:4318"
	}
	return strings.TrimRight(api, "/"), otlp
}

// jaegerTrace is the part of Jaeger's /api/traces answers the test reads.
type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

type jaegerSpan struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []jaegerRef `json:"references"`
	ProcessID     string      `json:"processID"`
	Tags          []jaegerKV  `json:"tags"`
}

type jaegerRef struct {
	RefType string `json:"refType"` // CHILD_OF, or FOLLOWS_FROM for a span link
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type jaegerKV struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

func (s *jaegerSpan) tag(key string) string {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// parent is the span's CHILD_OF reference, "" for a root.
func (s *jaegerSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (s *jaegerSpan) linksTo(traceID, spanID string) bool {
	return slices.Contains(s.References, jaegerRef{RefType: "FOLLOWS_FROM", TraceID: traceID, SpanID: spanID})
}

// dbSystem is the database a client span talks to: otelpgx writes the newer
// db.system.name, redisotel the older db.system.
func (s *jaegerSpan) dbSystem() string {
	if v := s.tag("db.system.name"); v != "" {
		return v
	}
	return s.tag("db.system")
}

func (tr *jaegerTrace) service(s *jaegerSpan) string { return tr.Processes[s.ProcessID].ServiceName }

func (tr *jaegerTrace) byName(name string) []*jaegerSpan {
	var out []*jaegerSpan
	for i := range tr.Spans {
		if tr.Spans[i].OperationName == name {
			out = append(out, &tr.Spans[i])
		}
	}
	return out
}

// descendants returns the spans below id in the trace, at any depth.
func (tr *jaegerTrace) descendants(id string) []*jaegerSpan {
	var out []*jaegerSpan
	below := map[string]bool{id: true}
	for grew := true; grew; {
		grew = false
		for i := range tr.Spans {
			s := &tr.Spans[i]
			if !below[s.SpanID] && below[s.parent()] {
				below[s.SpanID] = true
				out = append(out, s)
				grew = true
			}
		}
	}
	return out
}

// describe lists the trace's spans for a failure message.
func (tr *jaegerTrace) describe() string {
	var b strings.Builder
	for i := range tr.Spans {
		s := &tr.Spans[i]
		fmt.Fprintf(&b, "\n  %s %q service=%s kind=%s parent=%s refs=%v db=%s",
			s.SpanID, s.OperationName, tr.service(s), s.tag("span.kind"), s.parent(), s.References, s.dbSystem())
	}
	return b.String()
}

// jaeger is a client of Jaeger's query API.
type jaeger struct {
	api  string
	http *http.Client
}

// needJaeger fails the test, never skips it, when Jaeger does not answer.
func needJaeger(t *testing.T) (*jaeger, string) {
	t.Helper()
	api, otlp := jaegerURLs()
	j := &jaeger{api: api, http: &http.Client{Timeout: 5 * time.Second}}
	var svcs struct{ Data []string }
	if err := j.get(t.Context(), "/api/services", &svcs); err != nil {
		t.Fatalf("Jaeger's query API at %s does not answer (%v); start Jaeger with scripts/deps/jaeger.sh up, "+
			"or point AGGREGATOR_TEST_JAEGER_URL and AGGREGATOR_TEST_OTLP_ENDPOINT at one", api, err)
	}
	return j, otlp
}

func (j *jaeger) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.api+path, nil)
	if err != nil {
		return err
	}
	resp, err := j.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %.300s", path, resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

// trace returns one trace; an error while Jaeger does not know it (404).
func (j *jaeger) trace(ctx context.Context, id string) (jaegerTrace, error) {
	var out struct{ Data []jaegerTrace }
	if err := j.get(ctx, "/api/traces/"+id, &out); err != nil {
		return jaegerTrace{}, err
	}
	if len(out.Data) != 1 {
		return jaegerTrace{}, fmt.Errorf("trace %s: %d traces in the answer", id, len(out.Data))
	}
	return out.Data[0], nil
}

// search returns the traces of service holding an operation with the tags.
func (j *jaeger) search(ctx context.Context, service, operation string, tags map[string]string) ([]jaegerTrace, error) {
	tj, _ := json.Marshal(tags)
	q := url.Values{"service": {service}, "operation": {operation}, "tags": {string(tj)},
		"lookback": {"1h"}, "limit": {"100"}}
	var out struct{ Data []jaegerTrace }
	err := j.get(ctx, "/api/traces?"+q.Encode(), &out)
	return out.Data, err
}

// withTracing restarts the stack's processes exporting their spans to
// Jaeger, each under its own service name. The stack starts them without
// OTEL_* variables (baseEnv leaves a developer's own out).
func (s *stack) withTracing(t *testing.T, otlp string) {
	t.Helper()
	procs := append([]*process{s.ingest, s.query}, s.workers...)
	for _, p := range procs {
		p.stop(t, 20*time.Second)
		service, _, _ := strings.Cut(p.name, "-") // worker-1 is a worker
		p.env = append(slices.Clone(p.env),
			"OTEL_EXPORTER_OTLP_ENDPOINT="+otlp,
			"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
			"OTEL_SERVICE_NAME="+service,
			"OTEL_BSP_SCHEDULE_DELAY=100", // export within a tenth of a second
		)
		p.start(t)
	}
	for _, p := range procs {
		p.waitReady(t, time.Minute)
	}
}

// traceparent is a sampled W3C trace context with fresh ids.
func traceparent() (header, traceID, parentID string) {
	traceID, parentID = randomHex(16), randomHex(8)
	return "00-" + traceID + "-" + parentID + "-01", traceID, parentID
}

// traceTimeout bounds each wait for spans to reach Jaeger.
const traceTimeout = 60 * time.Second

// TestTracingAcrossServices follows one publish request through Jaeger:
// ingest's POST /publish server span continues the caller's trace and holds
// the Kafka produce span; the worker's "process batch" spans (a trace of
// their own) link to that produce span, with claim, persist and mark done
// under them and Redis and Postgres client spans under those; a GET /stats
// on query holds its Postgres spans. Each span carries its service's name.
func TestTracingAcrossServices(t *testing.T) {
	j, otlp := needJaeger(t)
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 1})
	s.withTracing(t, otlp)

	// Three records, one a copy of another, under the caller's trace.
	tp, traceID, callerID := traceparent()
	body := `[` + tracedEvent("t-1") + `,` + tracedEvent("t-2") + `,` + tracedEvent("t-1") + `]`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ingestURL()+"/publish", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", tp)
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("POST /publish: %v", err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /publish: %s %s", resp.Status, out)
	}

	// Ingest: the server span under the caller's, the produce span under it.
	produceName := "publish " + s.topic
	var tr jaegerTrace
	wctx, wcancel := context.WithTimeout(ctx, traceTimeout)
	defer wcancel()
	if !waitFor(wctx, 250*time.Millisecond, func() bool {
		tr, err = j.trace(wctx, traceID)
		return err == nil && len(tr.byName("POST /publish")) > 0 && len(tr.byName(produceName)) > 0
	}) {
		t.Fatalf("Jaeger has no trace %s with %q and %q after %v (last: %v)%s",
			traceID, "POST /publish", produceName, traceTimeout, err, tr.describe())
	}
	t.Logf("publish trace %s:%s", traceID, tr.describe())
	pub, produce := tr.byName("POST /publish")[0], tr.byName(produceName)[0]
	if n := len(tr.byName("POST /publish")); n != 1 {
		t.Errorf("%d POST /publish spans, want 1", n)
	}
	if svc := tr.service(pub); svc != "ingest" {
		t.Errorf("POST /publish of service %q, want ingest", svc)
	}
	if k := pub.tag("span.kind"); k != "server" {
		t.Errorf("POST /publish kind %q, want server", k)
	}
	if p := pub.parent(); p != callerID {
		t.Errorf("POST /publish parent %q, want the caller's span %s", p, callerID)
	}
	if svc := tr.service(produce); svc != "ingest" {
		t.Errorf("%s of service %q, want ingest", produceName, svc)
	}
	if p := produce.parent(); p != pub.SpanID {
		t.Errorf("%s parent %q, want the POST /publish span %s", produceName, p, pub.SpanID)
	}
	for k, want := range map[string]string{
		"span.kind":                     "producer",
		"messaging.system":              "kafka",
		"messaging.destination.name":    s.topic,
		"messaging.batch.message_count": "3",
	} {
		if got := produce.tag(k); got != want {
			t.Errorf("%s: %s = %q, want %q", produceName, k, got, want)
		}
	}

	// Worker: the batch spans linked to the produce span. Records of two
	// keys may land on two partitions, so one or two batches; together they
	// hold the three records and the one duplicate.
	var batches []*jaegerSpan
	var batchTraces []jaegerTrace
	received, duplicates := 0, 0
	if !waitFor(wctx, 500*time.Millisecond, func() bool {
		var trs []jaegerTrace
		trs, err = j.search(wctx, "worker", "process batch", map[string]string{"messaging.destination.name": s.topic})
		if err != nil {
			return false
		}
		batches, batchTraces, received, duplicates = nil, nil, 0, 0
		for _, bt := range trs {
			// The search answers whole traces: fetch each again once its
			// children have arrived too.
			for _, b := range bt.byName("process batch") {
				if !b.linksTo(traceID, produce.SpanID) {
					continue
				}
				full, ferr := j.trace(wctx, bt.TraceID)
				if ferr != nil {
					err = ferr
					return false
				}
				batchTraces = append(batchTraces, full)
				for _, fb := range full.byName("process batch") {
					if fb.SpanID == b.SpanID {
						batches = append(batches, fb)
						received += atoi(fb.tag("messaging.batch.message_count"))
						duplicates += atoi(fb.tag("aggregator.batch.duplicates"))
					}
				}
			}
		}
		return received >= 3 && batchesComplete(batchTraces, batches)
	}) {
		var desc string
		for _, bt := range batchTraces {
			desc += bt.describe()
		}
		t.Fatalf("Jaeger has no complete worker batch spans linked to the produce span %s of trace %s after %v "+
			"(%d linked, %d records; last error %v):%s", produce.SpanID, traceID, traceTimeout, len(batches), received, err, desc)
	}
	if received != 3 || duplicates != 1 {
		t.Errorf("the linked batches hold %d records and %d duplicates, want 3 and 1", received, duplicates)
	}
	for i, b := range batches {
		bt := &batchTraces[i]
		t.Logf("worker trace %s:%s", bt.TraceID, bt.describe())
		checkBatch(t, bt, b, s.topic)
	}

	// Query: GET /stats under its caller's trace, with Postgres below it.
	tp, traceID, callerID = traceparent()
	req, err = http.NewRequestWithContext(ctx, http.MethodGet, s.queryURL()+"/stats", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", tp)
	resp, err = s.http.Do(req)
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stats: %s", resp.Status)
	}
	var stats *jaegerSpan
	var pg []*jaegerSpan
	wctx2, wcancel2 := context.WithTimeout(ctx, traceTimeout)
	defer wcancel2()
	if !waitFor(wctx2, 250*time.Millisecond, func() bool {
		tr, err = j.trace(wctx2, traceID)
		if err != nil || len(tr.byName("GET /stats")) == 0 {
			return false
		}
		stats = tr.byName("GET /stats")[0]
		pg = dbSpans(tr.descendants(stats.SpanID), "postgresql")
		return len(pg) > 0
	}) {
		t.Fatalf("Jaeger has no trace %s with GET /stats and a Postgres span under it after %v (last: %v)%s",
			traceID, traceTimeout, err, tr.describe())
	}
	t.Logf("stats trace %s:%s", traceID, tr.describe())
	if svc := tr.service(stats); svc != "query" {
		t.Errorf("GET /stats of service %q, want query", svc)
	}
	if k := stats.tag("span.kind"); k != "server" {
		t.Errorf("GET /stats kind %q, want server", k)
	}
	if p := stats.parent(); p != callerID {
		t.Errorf("GET /stats parent %q, want the caller's span %s", p, callerID)
	}
	for _, sp := range pg {
		if svc := tr.service(sp); svc != "query" || sp.tag("span.kind") != "client" {
			t.Errorf("Postgres span %q: service %q, kind %q; want query, client", sp.OperationName, svc, sp.tag("span.kind"))
		}
	}

	// Probes and scrapes are never traced.
	for _, svc := range []string{"ingest", "worker", "query"} {
		var ops struct{ Data []string }
		if err := j.get(ctx, "/api/services/"+svc+"/operations", &ops); err != nil {
			t.Fatal(err)
		}
		for _, op := range ops.Data {
			if strings.Contains(op, "/readyz") || strings.Contains(op, "/healthz") || strings.Contains(op, "/metrics") {
				t.Errorf("%s traced a probe: operation %q", svc, op)
			}
		}
	}
}

// batchesComplete reports whether each batch span has its stage children
// and their Redis and Postgres spans in Jaeger.
func batchesComplete(trs []jaegerTrace, batches []*jaegerSpan) bool {
	for i, b := range batches {
		tr := &trs[i]
		stages := map[string]*jaegerSpan{}
		for _, c := range tr.descendants(b.SpanID) {
			if c.parent() == b.SpanID {
				stages[c.OperationName] = c
			}
		}
		for name, db := range map[string]string{"claim": "redis", "persist": "postgresql", "mark done": "redis"} {
			st := stages[name]
			if st == nil || len(dbSpans(tr.descendants(st.SpanID), db)) == 0 {
				return false
			}
		}
	}
	return len(batches) > 0
}

// checkBatch asserts what DESIGN.md §6 wants of a worker batch span.
func checkBatch(t *testing.T, tr *jaegerTrace, b *jaegerSpan, topic string) {
	t.Helper()
	if svc := tr.service(b); svc != "worker" {
		t.Errorf("process batch of service %q, want worker", svc)
	}
	if p := b.parent(); p != "" {
		t.Errorf("process batch has parent %s; want a root span that links to its producers", p)
	}
	for k, want := range map[string]string{
		"span.kind":                  "consumer",
		"messaging.system":           "kafka",
		"messaging.operation.type":   "process",
		"messaging.destination.name": topic,
	} {
		if got := b.tag(k); got != want {
			t.Errorf("process batch: %s = %q, want %q", k, got, want)
		}
	}
	if b.tag("messaging.destination.partition.id") == "" {
		t.Errorf("process batch without messaging.destination.partition.id")
	}
	for _, sp := range tr.descendants(b.SpanID) {
		if svc := tr.service(sp); svc != "worker" {
			t.Errorf("span %q under the batch of service %q, want worker", sp.OperationName, svc)
		}
		if db := sp.dbSystem(); db != "" && sp.tag("span.kind") != "client" {
			t.Errorf("%s span %q of kind %q, want client", db, sp.OperationName, sp.tag("span.kind"))
		}
	}
	// Redis and Postgres spans sit under the stage that made the calls.
	for _, c := range tr.descendants(b.SpanID) {
		if c.parent() != b.SpanID {
			continue
		}
		switch c.OperationName {
		case "claim", "mark done":
			if got := dbSpans(tr.descendants(c.SpanID), "postgresql"); len(got) > 0 {
				t.Errorf("%s holds Postgres spans: %q", c.OperationName, got[0].OperationName)
			}
		case "persist":
			if got := dbSpans(tr.descendants(c.SpanID), "redis"); len(got) > 0 {
				t.Errorf("persist holds Redis spans: %q", got[0].OperationName)
			}
		}
	}
}

func dbSpans(spans []*jaegerSpan, system string) []*jaegerSpan {
	var out []*jaegerSpan
	for _, s := range spans {
		if s.dbSystem() == system {
			out = append(out, s)
		}
	}
	return out
}

func tracedEvent(id string) string {
	return fmt.Sprintf(`{"topic":"traced","event_id":%q,"timestamp":"2026-11-25T10:00:00Z","source":"e2e"}`, id)
}

func atoi(s string) int {
	var n int
	_, _ = fmt.Sscan(s, &n)
	return n
}
