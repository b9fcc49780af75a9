package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/event-aggregator/event-aggregator/pkg/telemetry"
)

func TestLoggerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log, err := telemetry.NewLogger(&buf, "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))

	log.InfoContext(ctx, "traced")
	log.With("component", "x").WithGroup("g").DebugContext(ctx, "derived", "k", "v")
	log.InfoContext(context.Background(), "untraced")
	log.Info("no context")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	for i, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %d not JSON: %s", i, line)
		}
		traced := i < 2
		ids := rec["trace_id"]
		span := rec["span_id"]
		if i == 1 { // inside the group opened with WithGroup
			g, _ := rec["g"].(map[string]any)
			ids, span = g["trace_id"], g["span_id"]
		}
		if traced && (ids != tid.String() || span != sid.String()) {
			t.Errorf("line %d lacks the trace ids: %s", i, line)
		}
		if !traced && (rec["trace_id"] != nil || rec["span_id"] != nil) {
			t.Errorf("line %d has trace ids without a span: %s", i, line)
		}
	}
}

func TestLoggerRejectsBadSettings(t *testing.T) {
	if _, err := telemetry.NewLogger(&bytes.Buffer{}, "loud", "json"); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := telemetry.NewLogger(&bytes.Buffer{}, "info", "xml"); err == nil {
		t.Error("bad format accepted")
	}
}
