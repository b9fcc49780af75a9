// Package api assembles the HTTP surface of openapi.json from the handlers a
// binary has: the all-in-one has them all, ingest only publish, query only
// the reads. Every binary serves the probes, /metrics and /openapi.json.
package api

import (
	_ "embed"
	"net/http"

	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/console"
	"github.com/event-aggregator/event-aggregator/pkg/health"
	"github.com/event-aggregator/event-aggregator/pkg/problem"
	"github.com/event-aggregator/event-aggregator/pkg/query"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the contract as OpenAPI 3.
func OpenAPI() []byte { return openAPI }

// Routes are the handlers of one binary; nil ones are not served.
type Routes struct {
	Publish http.Handler
	Query   *query.Handlers
	Ready   http.Handler
	Metrics http.Handler
	Keys    *auth.Keys
	Console *console.Console
	// Wrap instruments every route (metrics, traces); may be nil.
	Wrap func(http.Handler) http.Handler
}

// Endpoint is one method and path of the API.
type Endpoint struct{ Method, Path string }

// Endpoints lists every endpoint a binary may serve, in the order of
// openapi.json; the document is tested against it.
func Endpoints() []Endpoint {
	var out []Endpoint
	for _, r := range table(Routes{}) {
		out = append(out, Endpoint{r.method, r.path})
	}
	return out
}

type route struct {
	method, path string
	h            http.Handler // nil when the binary does not serve it
	protected    bool
	action       auth.Action // what a key must allow, when protected
}

func table(rt Routes) []route {
	var events, stats, topics http.Handler
	if q := rt.Query; q != nil {
		events, stats, topics = http.HandlerFunc(q.Events), http.HandlerFunc(q.Stats), http.HandlerFunc(q.Topics)
	}
	var page, script, style, info http.Handler
	if c := rt.Console; c != nil {
		page, script, style, info = http.HandlerFunc(c.Page), http.HandlerFunc(c.Script), http.HandlerFunc(c.Style), http.HandlerFunc(c.Info)
	}
	return []route{
		{"POST", "/publish", rt.Publish, true, auth.Publish},
		{"GET", "/events", events, true, auth.Read},
		{"GET", "/stats", stats, true, auth.Read},
		{"GET", "/topics", topics, true, auth.Read},
		{"GET", "/healthz", health.Live(), false, 0},
		{"GET", "/readyz", rt.Ready, false, 0},
		{"GET", "/metrics", rt.Metrics, false, 0},
		{"GET", "/openapi.json", http.HandlerFunc(serveOpenAPI), false, 0},
		// The console's page and files are public; its data comes from the
		// protected endpoints, so a key is asked for only there.
		{"GET", "/", page, false, 0},
		{"GET", "/console/app.js", script, false, 0},
		{"GET", "/console/app.css", style, false, 0},
		{"GET", "/console/info", info, true, auth.Read},
	}
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

// Handler returns the mux of a binary.
func Handler(rt Routes) http.Handler {
	keys := rt.Keys
	if keys == nil {
		keys = auth.NewKeys(nil)
	}
	mux := http.NewServeMux()
	for _, r := range table(rt) {
		if r.h == nil {
			continue
		}
		h := r.h
		if r.protected {
			h = keys.Require(r.action, h)
		}
		pattern := r.path
		if pattern == "/" {
			pattern = "/{$}" // the root only, not every path
		}
		mux.Handle(r.method+" "+pattern, h)
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			// No route: the mux's plain-text 404 or 405, as problem+json.
			w = &problemWriter{ResponseWriter: w}
		}
		mux.ServeHTTP(w, r)
	})
	if rt.Wrap != nil {
		h = rt.Wrap(h)
	}
	return h
}

// problemWriter turns an error status written by http.ServeMux into a
// problem+json body, keeping its headers (Allow on a 405).
type problemWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *problemWriter) WriteHeader(code int) {
	if code < 400 || w.wrote {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wrote = true
	w.Header().Del("Content-Length")
	problem.Write(w.ResponseWriter, code, "no such endpoint or method; see /openapi.json", nil)
}

func (w *problemWriter) Write(b []byte) (int, error) {
	if w.wrote {
		return len(b), nil // the problem body replaced this one
	}
	return w.ResponseWriter.Write(b)
}

func (w *problemWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
