package testdeps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// DefaultJaegerURL and DefaultOTLPEndpoint are where scripts/deps/jaeger.sh
// runs Jaeger's query API and its OTLP/HTTP receiver.
const (
	DefaultJaegerURL    = "http://127.0.0.1:16686"
	DefaultOTLPEndpoint = "http://127.0.0.1:4318"
)

var jaegerHTTP = &http.Client{Timeout: 5 * time.Second}

// JaegerURLs returns Jaeger's query API (AGGREGATOR_TEST_JAEGER_URL, default
// DefaultJaegerURL) and the OTLP/HTTP endpoint to export to
// (AGGREGATOR_TEST_OTLP_ENDPOINT, default DefaultOTLPEndpoint). It fails the
// test when the query API does not answer.
func JaegerURLs(t testing.TB) (api, otlp string) {
	t.Helper()
	api, otlp = os.Getenv("AGGREGATOR_TEST_JAEGER_URL"), os.Getenv("AGGREGATOR_TEST_OTLP_ENDPOINT")
	if api == "" {
		api = DefaultJaegerURL
	}
	if otlp == "" {
		otlp = DefaultOTLPEndpoint
	}
	api = strings.TrimRight(api, "/")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var svcs struct{ Data []string }
	if err := JaegerGet(ctx, api, "/api/services", &svcs); err != nil {
		t.Fatalf("Jaeger's query API at %s does not answer (%v); start Jaeger with scripts/deps/jaeger.sh up, "+
			"or point AGGREGATOR_TEST_JAEGER_URL and AGGREGATOR_TEST_OTLP_ENDPOINT at one", api, err)
	}
	return api, otlp
}

// JaegerGet decodes the JSON answer of Jaeger's query API at api+path.
func JaegerGet(ctx context.Context, api, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+path, nil)
	if err != nil {
		return err
	}
	resp, err := jaegerHTTP.Do(req)
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

// FetchTrace returns one trace; an error while Jaeger does not know it (404).
func FetchTrace(ctx context.Context, api, traceID string) (JaegerTrace, error) {
	var out struct{ Data []JaegerTrace }
	if err := JaegerGet(ctx, api, "/api/traces/"+traceID, &out); err != nil {
		return JaegerTrace{}, err
	}
	if len(out.Data) != 1 {
		return JaegerTrace{}, fmt.Errorf("trace %s: %d traces in the answer", traceID, len(out.Data))
	}
	return out.Data[0], nil
}

// PollTrace fetches a trace every interval until done accepts it or ctx
// ends: spans reach Jaeger a while after they end, and not all at once. On
// timeout it returns the last trace seen with the reason it was not accepted.
func PollTrace(ctx context.Context, api, traceID string, every time.Duration, done func(*JaegerTrace) bool) (JaegerTrace, error) {
	for {
		tr, err := FetchTrace(ctx, api, traceID)
		if err == nil && done(&tr) {
			return tr, nil
		}
		if err == nil {
			err = errors.New("trace incomplete")
		}
		select {
		case <-ctx.Done():
			return tr, err
		case <-time.After(every):
		}
	}
}

// JaegerOperations lists the operation names Jaeger holds for a service.
func JaegerOperations(ctx context.Context, api, service string) ([]string, error) {
	var ops struct{ Data []string }
	err := JaegerGet(ctx, api, "/api/services/"+service+"/operations", &ops)
	return ops.Data, err
}

// JaegerTrace is the part of a trace in Jaeger's query API answers that the
// tests read.
type JaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []JaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// JaegerSpan is one span of a JaegerTrace.
type JaegerSpan struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []JaegerRef `json:"references"`
	ProcessID     string      `json:"processID"`
	Tags          []JaegerKV  `json:"tags"`
	Logs          []JaegerLog `json:"logs"`
}

// JaegerRef is a span reference: CHILD_OF its parent, or FOLLOWS_FROM for a
// span link.
type JaegerRef struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// JaegerKV is a span attribute or an event field.
type JaegerKV struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// JaegerLog is a span event.
type JaegerLog struct {
	Fields []JaegerKV `json:"fields"`
}

// Field returns the event's field as text, "" when it is missing.
func (l *JaegerLog) Field(key string) string { return kvValue(l.Fields, key) }

// Tag returns the span's attribute as text, "" when it is missing.
func (s *JaegerSpan) Tag(key string) string { return kvValue(s.Tags, key) }

func kvValue(kvs []JaegerKV, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// Parent is the span's CHILD_OF reference, "" for a root.
func (s *JaegerSpan) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// LinksTo reports whether the span links to the given span.
func (s *JaegerSpan) LinksTo(traceID, spanID string) bool {
	return slices.Contains(s.References, JaegerRef{RefType: "FOLLOWS_FROM", TraceID: traceID, SpanID: spanID})
}

// Service is the service name of the process that recorded s.
func (tr *JaegerTrace) Service(s *JaegerSpan) string { return tr.Processes[s.ProcessID].ServiceName }

// ByName returns the trace's spans of the operation, in Jaeger's order.
func (tr *JaegerTrace) ByName(name string) []*JaegerSpan {
	var out []*JaegerSpan
	for i := range tr.Spans {
		if tr.Spans[i].OperationName == name {
			out = append(out, &tr.Spans[i])
		}
	}
	return out
}

// Descendants returns the spans below id in the trace, at any depth.
func (tr *JaegerTrace) Descendants(id string) []*JaegerSpan {
	var out []*JaegerSpan
	below := map[string]bool{id: true}
	for grew := true; grew; {
		grew = false
		for i := range tr.Spans {
			s := &tr.Spans[i]
			if !below[s.SpanID] && below[s.Parent()] {
				below[s.SpanID] = true
				out = append(out, s)
				grew = true
			}
		}
	}
	return out
}
