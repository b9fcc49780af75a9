package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/event-aggregator/event-aggregator/pkg/telemetry"
)

// clearOTEL unsets the variables SetupTracing reads, whatever the
// environment of the test run.
func clearOTEL(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"} {
		t.Setenv(k, "")
	}
}

// collector is an OTLP/HTTP trace receiver.
type collector struct {
	mu    sync.Mutex
	spans []*tracepb.ResourceSpans
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.spans = append(c.spans, req.GetResourceSpans()...)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// exported returns the resource attributes and span names received.
func (c *collector) exported() (map[string]string, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := map[string]string{}
	var names []string
	for _, rs := range c.spans {
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				names = append(names, s.GetName())
			}
		}
	}
	return res, names
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestSetupTracingOffWithoutEndpoint(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"nothing set":  {},
		"sdk disabled": {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
		"exporter off": {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOTEL(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			tr, err := telemetry.SetupTracing(context.Background(), "svc", discard())
			if err != nil {
				t.Fatal(err)
			}
			if tr.Exporting {
				t.Error("exporting")
			}
			_, span := tr.Provider.Tracer("t").Start(context.Background(), "x")
			if span.IsRecording() {
				t.Error("a span records with tracing off")
			}
			span.End()
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSetupTracingRejectsBadSettings(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"protocol": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
		"exporter": {"OTEL_TRACES_EXPORTER": "zipkin"},
	} {
		t.Run(name, func(t *testing.T) {
			clearOTEL(t)
			for k, v := range env {
				t.Setenv(k, v)
			}
			if _, err := telemetry.SetupTracing(context.Background(), "svc", discard()); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestSetupTracingExportsOTLPHTTP(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	clearOTEL(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")

	tr, err := telemetry.SetupTracing(context.Background(), "svc", discard())
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Exporting {
		t.Fatal("not exporting with an endpoint set")
	}
	_, span := tr.Provider.Tracer("t").Start(context.Background(), "work")
	span.End()
	// Shutdown flushes the batch processor.
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, names := col.exported()
	if len(names) != 1 || names[0] != "work" {
		t.Fatalf("exported spans %v", names)
	}
	if res["service.name"] != "svc" || res["deployment.environment.name"] != "test" || res["telemetry.sdk.language"] != "go" {
		t.Errorf("resource %v", res)
	}
}

func TestSetupTracingServiceNameAndSamplerFromEnv(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(col)
	defer srv.Close()
	clearOTEL(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", srv.URL+"/v1/traces")
	t.Setenv("OTEL_SERVICE_NAME", "renamed")
	t.Setenv("OTEL_TRACES_SAMPLER", "traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "0")

	tr, err := telemetry.SetupTracing(context.Background(), "svc", discard())
	if err != nil {
		t.Fatal(err)
	}
	_, dropped := tr.Provider.Tracer("t").Start(context.Background(), "sampled out")
	if dropped.SpanContext().IsSampled() {
		t.Error("ratio 0 sampled a span")
	}
	dropped.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, names := col.exported(); len(names) != 0 {
		t.Errorf("exported %v at ratio 0", names)
	}

	t.Setenv("OTEL_TRACES_SAMPLER", "")
	tr, err = telemetry.SetupTracing(context.Background(), "svc", discard())
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Provider.Tracer("t").Start(context.Background(), "kept")
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res, names := col.exported(); len(names) != 1 || res["service.name"] != "renamed" {
		t.Errorf("exported %v with resource %v, want one span of service renamed", names, res)
	}
}
