// Package telemetry sets up what an operator sees of a process: structured
// logs, Prometheus metrics and (OpenTelemetry) traces.
package telemetry

import (
	"fmt"
	"io"
	"log/slog"
)

// NewLogger returns a slog logger writing JSON (or text) at level.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch format {
	case "json", "":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want json or text", format)
	}
	return slog.New(h), nil
}
