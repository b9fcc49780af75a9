// Package apitest checks HTTP responses against the OpenAPI document that
// every binary serves, so the tests of each binary keep the document and the
// server in step.
package apitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/event-aggregator/event-aggregator/pkg/api"
)

// Checker validates responses against the document.
type Checker struct {
	router routers.Router
}

// New loads and validates the document.
func New() (*Checker, error) {
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("load openapi.json: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("openapi.json is not valid OpenAPI: %w", err)
	}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi.json routes: %w", err)
	}
	return &Checker{router: r}, nil
}

// ErrNoRoute is returned for a request the document does not describe; such
// a request must get a 404 or 405 problem, which the caller checks.
var ErrNoRoute = errors.New("no operation in the document")

// Check validates the response (status, header, body) to req: its status
// must be listed for the operation, and its headers and body must match.
func (c *Checker) Check(req *http.Request, status int, header http.Header, body []byte) error {
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, ErrNoRoute)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		return fmt.Errorf("%s %s → %d does not match openapi.json: %w\nbody: %.2000s", req.Method, req.URL.RequestURI(), status, err, body)
	}
	return nil
}

// checker returns a Checker or fails the test.
func checker(tb testing.TB) *Checker {
	tb.Helper()
	c, err := New()
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// report fails tb for a response that breaks the document; a request
// outside it must have been answered 404 or 405.
func report(tb testing.TB, err error, status int) {
	if errors.Is(err, ErrNoRoute) && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) {
		return
	}
	if err != nil {
		tb.Error(err)
	}
}

// Transport returns a RoundTripper over base (nil: http.DefaultTransport)
// that checks every response, failing tb when one breaks the document.
func Transport(tb testing.TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{tb: tb, base: base, c: checker(tb)}
}

type transport struct {
	tb   testing.TB
	base http.RoundTripper
	c    *Checker
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read the response to check it: %w", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	report(t.tb, t.c.Check(req, resp.StatusCode, resp.Header, body), resp.StatusCode)
	return resp, nil
}

// Handler wraps h so every response it writes is checked, for tests that
// call a handler directly.
func Handler(tb testing.TB, h http.Handler) http.Handler {
	c := checker(tb)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		report(tb, c.Check(r, rec.Code, rec.Header(), rec.Body.Bytes()), rec.Code)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
}
