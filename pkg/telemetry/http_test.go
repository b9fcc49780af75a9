package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/event-aggregator/event-aggregator/pkg/telemetry"
)

func recorder() (*tracetest.SpanRecorder, *sdktrace.TracerProvider) {
	rec := tracetest.NewSpanRecorder()
	return rec, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func TestHTTPMiddlewareTracesRoutesNotProbes(t *testing.T) {
	rec, tp := recorder()
	m := telemetry.NewMetrics()
	var handlerSpan trace.SpanContext
	mux := testMux(m)
	mux.Handle("GET /events", http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		handlerSpan = trace.SpanContextFromContext(r.Context())
	}))
	srv := httptest.NewServer(telemetry.HTTPMiddleware(m, tp, telemetry.Propagator())(mux))
	defer srv.Close()

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/publish", strings.NewReader("{}"))
	req.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	do(t, req)
	do(t, get(t, srv.URL+"/events"))
	for _, probe := range []string{"/healthz", "/readyz", "/metrics"} {
		do(t, get(t, srv.URL+probe))
	}
	do(t, get(t, srv.URL+"/nope"))

	spans := rec.Ended()
	var names []string
	for _, s := range spans {
		names = append(names, s.Name())
	}
	if strings.Join(names, ",") != "POST /publish,GET /events,GET" {
		t.Fatalf("spans %v, want POST /publish, GET /events and GET (unmatched); no probes", names)
	}
	pub := spans[0]
	if pub.SpanKind() != trace.SpanKindServer {
		t.Errorf("kind %v", pub.SpanKind())
	}
	if pub.SpanContext().TraceID().String() != traceID || pub.Parent().SpanID().String() != parentID {
		t.Errorf("publish span %s/%s does not continue the caller's trace", pub.SpanContext().TraceID(), pub.Parent().SpanID())
	}
	if got := attr(pub, "http.route").AsString(); got != "/publish" {
		t.Errorf("http.route %q", got)
	}
	if got := attr(pub, "http.response.status_code").AsInt64(); got != http.StatusAccepted {
		t.Errorf("status code attribute %d", got)
	}
	if !handlerSpan.Equal(spans[1].SpanContext()) {
		t.Error("the handler's context does not carry the server span")
	}

	// Tracing or not, every request is counted, probes included.
	fams := scrape(t, srv.URL)
	if got := value(t, fams, "aggregator_http_requests_total", map[string]string{"route": "GET /healthz", "method": "GET", "code": "200"}); got != 1 {
		t.Errorf("healthz requests %v", got)
	}
	if got := value(t, fams, "aggregator_http_requests_total", map[string]string{"route": "POST /publish", "method": "POST", "code": "202"}); got != 1 {
		t.Errorf("publish requests %v", got)
	}
}

func TestHTTPMiddlewareNoopIsMetricsOnly(t *testing.T) {
	m := telemetry.NewMetrics()
	for _, tp := range []trace.TracerProvider{nil, noop.NewTracerProvider()} {
		var sc trace.SpanContext
		h := telemetry.HTTPMiddleware(m, tp, nil)(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			sc = trace.SpanContextFromContext(r.Context())
		}))
		req := httptest.NewRequest(http.MethodGet, "/events", nil)
		req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		h.ServeHTTP(httptest.NewRecorder(), req)
		if sc.IsValid() {
			t.Errorf("%T: the request was instrumented", tp)
		}
	}
}

func TestHTTPTransportPropagates(t *testing.T) {
	rec, tp := recorder()
	m := telemetry.NewMetrics()
	srv := httptest.NewServer(telemetry.HTTPMiddleware(m, tp, nil)(testMux(m)))
	defer srv.Close()

	c := &http.Client{Transport: telemetry.HTTPTransport(nil, tp, nil)}
	ctx, parent := tp.Tracer("test").Start(context.Background(), "publisher")
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/publish", strings.NewReader("{}"))
	do2(t, c, req)
	parent.End()

	var client, server sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindClient:
			client = s
		case trace.SpanKindServer:
			server = s
		}
	}
	if client == nil || server == nil {
		t.Fatalf("spans %v, want a client and a server span", rec.Ended())
	}
	if client.Name() != "POST /publish" || server.Name() != "POST /publish" {
		t.Errorf("client span %q, server span %q", client.Name(), server.Name())
	}
	if client.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Error("client span not a child of the caller's span")
	}
	if server.Parent().SpanID() != client.SpanContext().SpanID() || !server.Parent().IsRemote() {
		t.Error("server span not a remote child of the client span: traceparent not injected")
	}
	if base := telemetry.HTTPTransport(nil, nil, nil); base != http.DefaultTransport {
		t.Errorf("untraced transport %T, want the base", base)
	}
}

func get(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t *testing.T, req *http.Request) { t.Helper(); do2(t, http.DefaultClient, req) }

func do2(t *testing.T, c *http.Client, req *http.Request) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
