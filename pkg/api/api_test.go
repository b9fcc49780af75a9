package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/console"
	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/query"
)

type emptyReader struct{}

func (emptyReader) Events(context.Context, string, event.Position, int) ([]event.Stored, error) {
	return nil, nil
}
func (emptyReader) Counts(context.Context) ([]event.Counts, error) { return nil, nil }
func (emptyReader) Size(context.Context) (int64, int64, error)     { return 0, 4096, nil }

func full(keys *auth.Keys) http.Handler {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	return Handler(Routes{
		Publish: ok,
		Query:   query.New(emptyReader{}, time.Now(), nil),
		Ready:   ok,
		Metrics: ok,
		Keys:    keys,
		Console: console.New(console.Options{Store: emptyReader{}}),
	})
}

// TestOpenAPIInSync: the document lists exactly the endpoints the handler
// serves, and each of them answers.
func TestOpenAPIInSync(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q", doc.OpenAPI)
	}
	var inDoc []string
	for path, ops := range doc.Paths {
		for method := range ops {
			inDoc = append(inDoc, strings.ToUpper(method)+" "+path)
		}
	}
	var served []string
	h := full(nil)
	for _, e := range Endpoints() {
		served = append(served, e.Method+" "+e.Path)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(e.Method, e.Path, strings.NewReader("{}")))
		if rec.Code == http.StatusNotFound || rec.Code == http.StatusMethodNotAllowed {
			t.Errorf("%s %s: status %d", e.Method, e.Path, rec.Code)
		}
	}
	slices.Sort(inDoc)
	slices.Sort(served)
	if !slices.Equal(inDoc, served) {
		t.Errorf("openapi.json lists %v\nthe handler serves %v", inDoc, served)
	}
}

func TestAPIKeys(t *testing.T) {
	h := full(auth.NewKeys([]string{"s3cret", "other"}))
	cases := []struct {
		method, path, header string
		want                 int
	}{
		{"POST", "/publish", "", http.StatusUnauthorized},
		{"POST", "/publish", "Bearer wrong", http.StatusUnauthorized},
		{"POST", "/publish", "Bearer s3cre", http.StatusUnauthorized},
		{"POST", "/publish", "Basic s3cret", http.StatusUnauthorized},
		{"POST", "/publish", "Bearer s3cret", http.StatusAccepted},
		{"POST", "/publish", "bearer other", http.StatusAccepted},
		{"GET", "/events", "", http.StatusUnauthorized},
		{"GET", "/stats", "", http.StatusUnauthorized},
		{"GET", "/topics", "", http.StatusUnauthorized},
		{"GET", "/stats", "Bearer other", http.StatusOK},
		{"GET", "/healthz", "", http.StatusOK},
		{"GET", "/readyz", "", http.StatusAccepted},
		{"GET", "/metrics", "", http.StatusAccepted},
		{"GET", "/openapi.json", "", http.StatusOK},
		{"GET", "/", "", http.StatusOK},
		{"GET", "/console/app.js", "", http.StatusOK},
		{"GET", "/console/info", "", http.StatusUnauthorized},
		{"GET", "/console/info", "Bearer other", http.StatusOK},
	}
	for _, c := range cases {
		req := httptest.NewRequest(c.method, c.path, strings.NewReader("{}"))
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s with %q: status %d, want %d", c.method, c.path, c.header, rec.Code, c.want)
		}
		if rec.Code == http.StatusUnauthorized && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("401 without problem+json")
		}
	}
}

func TestUnknownRoutesAreProblems(t *testing.T) {
	h := full(nil)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/nope", http.StatusNotFound},
		{"GET", "/console/", http.StatusNotFound},
		{"POST", "/", http.StatusMethodNotAllowed},
		{"GET", "/publish", http.StatusMethodNotAllowed},
		{"DELETE", "/events", http.StatusMethodNotAllowed},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, nil))
		var p struct{ Status int }
		if rec.Code != c.want || rec.Header().Get("Content-Type") != "application/problem+json" ||
			json.Unmarshal(rec.Body.Bytes(), &p) != nil || p.Status != c.want {
			t.Errorf("%s %s: %d %q %s, want %d problem+json", c.method, c.path, rec.Code,
				rec.Header().Get("Content-Type"), rec.Body, c.want)
		}
		if c.want == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", c.method, c.path)
		}
	}
}
