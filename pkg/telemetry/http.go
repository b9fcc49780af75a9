package telemetry

import (
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// HTTPMiddleware returns the api.Routes.Wrap of a binary. Every request is
// counted in m (when not nil) under its route pattern. Every request but the
// probes (/healthz, /readyz, /metrics) gets a server span named by its route
// pattern, e.g. "POST /publish", continuing the caller's trace from its
// traceparent header. With a nil or noop tp only the metrics are kept.
func HTTPMiddleware(m *Metrics, tp trace.TracerProvider, prop propagation.TextMapPropagator) func(http.Handler) http.Handler {
	withMetrics := func(h http.Handler) http.Handler {
		if m == nil {
			return h
		}
		return m.Middleware(h)
	}
	if !recording(tp) {
		return withMetrics
	}
	if prop == nil {
		prop = Propagator()
	}
	return func(next http.Handler) http.Handler {
		// The mux sets the pattern on the request otelhttp passes down, and
		// otelhttp renames its span from it once the handler returned.
		return otelhttp.NewHandler(withMetrics(routeAttribute(next)), "http",
			otelhttp.WithTracerProvider(tp),
			otelhttp.WithPropagators(prop),
			otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()), // Prometheus has the HTTP metrics
			otelhttp.WithFilter(traced),
			otelhttp.WithSpanNameFormatter(serverSpanName),
		)
	}
}

// HTTPTransport returns base (http.DefaultTransport when nil) with a client
// span per request and the trace context injected into its headers. With a
// nil or noop tp it returns base.
func HTTPTransport(base http.RoundTripper, tp trace.TracerProvider, prop propagation.TextMapPropagator) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if !recording(tp) {
		return base
	}
	if prop == nil {
		prop = Propagator()
	}
	return otelhttp.NewTransport(base,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(prop),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }),
	)
}

// recording reports whether tp can record spans: instrumenting for a noop
// provider would cost time for nothing.
func recording(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case nil, noop.TracerProvider:
		return false
	}
	return true
}

// traced leaves out the probes: scraped every few seconds, their spans would
// bury the requests that matter.
func traced(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return false
	}
	return true
}

// serverSpanName is the route pattern once routed ("POST /publish"), the
// method before or when no route matched.
func serverSpanName(_ string, r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	return r.Method
}

// routeAttribute records http.route, which otelhttp only reads before
// routing.
func routeAttribute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		if r.Pattern == "" {
			return
		}
		route := r.Pattern
		if _, path, ok := strings.Cut(route, " "); ok {
			route = path
		}
		trace.SpanFromContext(r.Context()).SetAttributes(semconv.HTTPRoute(route))
	})
}
