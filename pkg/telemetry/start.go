package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/config"
)

// Start is what every binary does first: its logger, one log line with its
// configuration (secrets masked), and its tracing. Close the Tracing last.
func Start(ctx context.Context, service string, logw io.Writer, lc config.Log, cfg any) (*slog.Logger, *Tracing, error) {
	log, err := NewLogger(logw, lc.Level, lc.Format)
	if err != nil {
		return nil, nil, err
	}
	log.Info("starting "+service, slog.GroupAttrs("config", config.LogAttrs(cfg)...))
	tracing, err := SetupTracing(ctx, service, log)
	if err != nil {
		return nil, nil, fmt.Errorf("setup tracing: %w", err)
	}
	log.Info("tracing", "exporting", tracing.Exporting)
	return log, tracing, nil
}

// closeTimeout bounds the flush of spans at exit.
const closeTimeout = 5 * time.Second

// Close flushes the spans still buffered, waiting at most a few seconds.
func (t *Tracing) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	return t.Shutdown(ctx)
}
