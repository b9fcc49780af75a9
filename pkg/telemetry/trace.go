package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0" // the version the SDK's resource uses
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is the OpenTelemetry tracing of one process.
type Tracing struct {
	// Provider is a noop provider unless an exporter is configured.
	Provider trace.TracerProvider
	// Propagator reads and writes W3C tracecontext and baggage.
	Propagator propagation.TextMapPropagator
	// Exporting reports whether spans leave the process.
	Exporting bool

	shutdown func(context.Context) error
}

// Propagator returns the W3C tracecontext + baggage propagator every binary
// uses on HTTP and Kafka headers.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// SetupTracing configures tracing from the standard OTEL_* variables:
//
//   - OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT turn
//     exporting on (so does OTEL_TRACES_EXPORTER=otlp, to the default
//     endpoint). Without them the provider is a noop and tracing costs nearly
//     nothing.
//   - OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL: http/protobuf (the default, port
//     4318) or grpc (port 4317). Headers, timeout, TLS and compression
//     variables are read by the exporter itself.
//   - OTEL_SERVICE_NAME (default serviceName), OTEL_RESOURCE_ATTRIBUTES.
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default
//     parentbased_always_on), OTEL_BSP_* for the batch span processor: read
//     by the SDK.
//   - OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn tracing off.
//
// Export errors are logged to log. Call Shutdown last: it flushes the spans
// still queued.
func SetupTracing(ctx context.Context, serviceName string, log *slog.Logger) (*Tracing, error) {
	t := &Tracing{
		Provider:   noop.NewTracerProvider(),
		Propagator: Propagator(),
		shutdown:   func(context.Context) error { return nil },
	}
	on, err := exportConfigured(os.Getenv)
	if err != nil {
		return nil, err
	}
	if !on {
		return t, nil
	}

	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(serviceName)), // OTEL_SERVICE_NAME overrides it
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
	)
	if errors.Is(err, resource.ErrPartialResource) {
		log.Warn("some resource attributes were not understood", "err", err)
	} else if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	exp, err := newExporter(ctx, os.Getenv)
	if err != nil {
		return nil, err
	}
	// The SDK reports export failures only to its global error handler.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing error", "err", err)
	}))
	// No sampler option: the SDK reads OTEL_TRACES_SAMPLER itself.
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t.Provider, t.Exporting = tp, true
	t.shutdown = tp.Shutdown
	return t, nil
}

// Shutdown flushes the queued spans and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if err := t.shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown tracing: %w", err)
	}
	return nil
}

func exportConfigured(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	switch exp := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER %q: want otlp or none", exp)
	}
}

func newExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	// Both exporters read endpoint, headers, timeout and TLS from OTEL_*.
	switch proto {
	case "http/protobuf", "":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTLP protocol %q: want http/protobuf or grpc", proto)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	return exp, nil
}
