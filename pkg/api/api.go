// Package api assembles the HTTP surface of DESIGN.md §4 from the handlers a
// binary has: the all-in-one has them all, ingest only publish, query only
// the reads. Every binary serves the probes, /metrics and /openapi.json.
package api

import (
	_ "embed"
	"net/http"

	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/health"
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
	// Wrap instruments every route (metrics, traces); may be nil.
	Wrap func(http.Handler) http.Handler
}

// Handler returns the mux of a binary.
func Handler(rt Routes) http.Handler {
	mux := http.NewServeMux()
	keys := rt.Keys
	if keys == nil {
		keys = auth.NewKeys(nil)
	}
	if rt.Publish != nil {
		mux.Handle("POST /publish", keys.Require(rt.Publish))
	}
	if q := rt.Query; q != nil {
		mux.Handle("GET /events", keys.Require(http.HandlerFunc(q.Events)))
		mux.Handle("GET /stats", keys.Require(http.HandlerFunc(q.Stats)))
		mux.Handle("GET /topics", keys.Require(http.HandlerFunc(q.Topics)))
	}
	mux.Handle("GET /healthz", health.Live())
	if rt.Ready != nil {
		mux.Handle("GET /readyz", rt.Ready)
	}
	if rt.Metrics != nil {
		mux.Handle("GET /metrics", rt.Metrics)
	}
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	var h http.Handler = mux
	if rt.Wrap != nil {
		h = rt.Wrap(h)
	}
	return h
}
