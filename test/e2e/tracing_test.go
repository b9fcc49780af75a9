package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
)

// dbSystem is the database a client span talks to: otelpgx writes the newer
// db.system.name, redisotel the older db.system.
func dbSystem(s *testdeps.JaegerSpan) string {
	if v := s.Tag("db.system.name"); v != "" {
		return v
	}
	return s.Tag("db.system")
}

// describe lists the trace's spans for a failure message.
func describe(tr *testdeps.JaegerTrace) string {
	var b strings.Builder
	for i := range tr.Spans {
		s := &tr.Spans[i]
		fmt.Fprintf(&b, "\n  %s %q service=%s kind=%s parent=%s refs=%v db=%s",
			s.SpanID, s.OperationName, tr.Service(s), s.Tag("span.kind"), s.Parent(), s.References, dbSystem(s))
	}
	return b.String()
}

// searchTraces returns the traces of service holding an operation with the tags.
func searchTraces(ctx context.Context, api, service, operation string, tags map[string]string) ([]testdeps.JaegerTrace, error) {
	tj, _ := json.Marshal(tags)
	q := url.Values{"service": {service}, "operation": {operation}, "tags": {string(tj)},
		"lookback": {"1h"}, "limit": {"100"}}
	var out struct{ Data []testdeps.JaegerTrace }
	err := testdeps.JaegerGet(ctx, api, "/api/traces?"+q.Encode(), &out)
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
	api, otlp := testdeps.JaegerURLs(t)
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
	wctx, wcancel := context.WithTimeout(ctx, traceTimeout)
	defer wcancel()
	tr, err := testdeps.PollTrace(wctx, api, traceID, 250*time.Millisecond, func(tr *testdeps.JaegerTrace) bool {
		return len(tr.ByName("POST /publish")) > 0 && len(tr.ByName(produceName)) > 0
	})
	if err != nil {
		t.Fatalf("Jaeger has no trace %s with %q and %q after %v (last: %v)%s",
			traceID, "POST /publish", produceName, traceTimeout, err, describe(&tr))
	}
	t.Logf("publish trace %s:%s", traceID, describe(&tr))
	pub, produce := tr.ByName("POST /publish")[0], tr.ByName(produceName)[0]
	if n := len(tr.ByName("POST /publish")); n != 1 {
		t.Errorf("%d POST /publish spans, want 1", n)
	}
	if svc := tr.Service(pub); svc != "ingest" {
		t.Errorf("POST /publish of service %q, want ingest", svc)
	}
	if k := pub.Tag("span.kind"); k != "server" {
		t.Errorf("POST /publish kind %q, want server", k)
	}
	if p := pub.Parent(); p != callerID {
		t.Errorf("POST /publish parent %q, want the caller's span %s", p, callerID)
	}
	if svc := tr.Service(produce); svc != "ingest" {
		t.Errorf("%s of service %q, want ingest", produceName, svc)
	}
	if p := produce.Parent(); p != pub.SpanID {
		t.Errorf("%s parent %q, want the POST /publish span %s", produceName, p, pub.SpanID)
	}
	for k, want := range map[string]string{
		"span.kind":                     "producer",
		"messaging.system":              "kafka",
		"messaging.destination.name":    s.topic,
		"messaging.batch.message_count": "3",
	} {
		if got := produce.Tag(k); got != want {
			t.Errorf("%s: %s = %q, want %q", produceName, k, got, want)
		}
	}

	// Worker: the batch spans linked to the produce span. Records of two
	// keys may land on two partitions, so one or two batches; together they
	// hold the three records and the one duplicate.
	var batches []*testdeps.JaegerSpan
	var batchTraces []testdeps.JaegerTrace
	received, duplicates := 0, 0
	if !waitFor(wctx, 500*time.Millisecond, func() bool {
		var trs []testdeps.JaegerTrace
		trs, err = searchTraces(wctx, api, "worker", "process batch", map[string]string{"messaging.destination.name": s.topic})
		if err != nil {
			return false
		}
		batches, batchTraces, received, duplicates = nil, nil, 0, 0
		for _, bt := range trs {
			// The search answers whole traces: fetch each again once its
			// children have arrived too.
			for _, b := range bt.ByName("process batch") {
				if !b.LinksTo(traceID, produce.SpanID) {
					continue
				}
				full, ferr := testdeps.FetchTrace(wctx, api, bt.TraceID)
				if ferr != nil {
					err = ferr
					return false
				}
				batchTraces = append(batchTraces, full)
				for _, fb := range full.ByName("process batch") {
					if fb.SpanID == b.SpanID {
						batches = append(batches, fb)
						received += atoi(fb.Tag("messaging.batch.message_count"))
						duplicates += atoi(fb.Tag("aggregator.batch.duplicates"))
					}
				}
			}
		}
		return received >= 3 && batchesComplete(batchTraces, batches)
	}) {
		var desc string
		for _, bt := range batchTraces {
			desc += describe(&bt)
		}
		t.Fatalf("Jaeger has no complete worker batch spans linked to the produce span %s of trace %s after %v "+
			"(%d linked, %d records; last error %v):%s", produce.SpanID, traceID, traceTimeout, len(batches), received, err, desc)
	}
	if received != 3 || duplicates != 1 {
		t.Errorf("the linked batches hold %d records and %d duplicates, want 3 and 1", received, duplicates)
	}
	for i, b := range batches {
		bt := &batchTraces[i]
		t.Logf("worker trace %s:%s", bt.TraceID, describe(bt))
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
	var stats *testdeps.JaegerSpan
	var pg []*testdeps.JaegerSpan
	wctx2, wcancel2 := context.WithTimeout(ctx, traceTimeout)
	defer wcancel2()
	tr, err = testdeps.PollTrace(wctx2, api, traceID, 250*time.Millisecond, func(tr *testdeps.JaegerTrace) bool {
		if len(tr.ByName("GET /stats")) == 0 {
			return false
		}
		stats = tr.ByName("GET /stats")[0]
		pg = dbSpans(tr.Descendants(stats.SpanID), "postgresql")
		return len(pg) > 0
	})
	if err != nil {
		t.Fatalf("Jaeger has no trace %s with GET /stats and a Postgres span under it after %v (last: %v)%s",
			traceID, traceTimeout, err, describe(&tr))
	}
	t.Logf("stats trace %s:%s", traceID, describe(&tr))
	if svc := tr.Service(stats); svc != "query" {
		t.Errorf("GET /stats of service %q, want query", svc)
	}
	if k := stats.Tag("span.kind"); k != "server" {
		t.Errorf("GET /stats kind %q, want server", k)
	}
	if p := stats.Parent(); p != callerID {
		t.Errorf("GET /stats parent %q, want the caller's span %s", p, callerID)
	}
	for _, sp := range pg {
		if svc := tr.Service(sp); svc != "query" || sp.Tag("span.kind") != "client" {
			t.Errorf("Postgres span %q: service %q, kind %q; want query, client", sp.OperationName, svc, sp.Tag("span.kind"))
		}
	}

	// Probes and scrapes are never traced.
	for _, svc := range []string{"ingest", "worker", "query"} {
		ops, err := testdeps.JaegerOperations(ctx, api, svc)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			if strings.Contains(op, "/readyz") || strings.Contains(op, "/healthz") || strings.Contains(op, "/metrics") {
				t.Errorf("%s traced a probe: operation %q", svc, op)
			}
		}
	}
}

// batchesComplete reports whether each batch span has its stage children
// and their Redis and Postgres spans in Jaeger.
func batchesComplete(trs []testdeps.JaegerTrace, batches []*testdeps.JaegerSpan) bool {
	for i, b := range batches {
		tr := &trs[i]
		stages := map[string]*testdeps.JaegerSpan{}
		for _, c := range tr.Descendants(b.SpanID) {
			if c.Parent() == b.SpanID {
				stages[c.OperationName] = c
			}
		}
		for name, db := range map[string]string{"claim": "redis", "persist": "postgresql", "mark done": "redis"} {
			st := stages[name]
			if st == nil || len(dbSpans(tr.Descendants(st.SpanID), db)) == 0 {
				return false
			}
		}
	}
	return len(batches) > 0
}

// checkBatch asserts what docs/architecture.md ("Traces and metrics") wants of a worker batch span.
func checkBatch(t *testing.T, tr *testdeps.JaegerTrace, b *testdeps.JaegerSpan, topic string) {
	t.Helper()
	if svc := tr.Service(b); svc != "worker" {
		t.Errorf("process batch of service %q, want worker", svc)
	}
	if p := b.Parent(); p != "" {
		t.Errorf("process batch has parent %s; want a root span that links to its producers", p)
	}
	for k, want := range map[string]string{
		"span.kind":                  "consumer",
		"messaging.system":           "kafka",
		"messaging.operation.type":   "process",
		"messaging.destination.name": topic,
	} {
		if got := b.Tag(k); got != want {
			t.Errorf("process batch: %s = %q, want %q", k, got, want)
		}
	}
	if b.Tag("messaging.destination.partition.id") == "" {
		t.Errorf("process batch without messaging.destination.partition.id")
	}
	for _, sp := range tr.Descendants(b.SpanID) {
		if svc := tr.Service(sp); svc != "worker" {
			t.Errorf("span %q under the batch of service %q, want worker", sp.OperationName, svc)
		}
		if db := dbSystem(sp); db != "" && sp.Tag("span.kind") != "client" {
			t.Errorf("%s span %q of kind %q, want client", db, sp.OperationName, sp.Tag("span.kind"))
		}
	}
	// Redis and Postgres spans sit under the stage that made the calls.
	for _, c := range tr.Descendants(b.SpanID) {
		if c.Parent() != b.SpanID {
			continue
		}
		switch c.OperationName {
		case "claim", "mark done":
			if got := dbSpans(tr.Descendants(c.SpanID), "postgresql"); len(got) > 0 {
				t.Errorf("%s holds Postgres spans: %q", c.OperationName, got[0].OperationName)
			}
		case "persist":
			if got := dbSpans(tr.Descendants(c.SpanID), "redis"); len(got) > 0 {
				t.Errorf("persist holds Redis spans: %q", got[0].OperationName)
			}
		}
	}
}

func dbSpans(spans []*testdeps.JaegerSpan, system string) []*testdeps.JaegerSpan {
	var out []*testdeps.JaegerSpan
	for _, s := range spans {
		if dbSystem(s) == system {
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
