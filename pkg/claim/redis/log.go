package redis

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// SetLogger routes go-redis's own log lines (one per failed dial, so one per
// batch during an outage) to log at debug level. The Claimer's degraded hook
// reports the outage once instead. go-redis's logger is process-wide: call
// this once from main.
func SetLogger(log *slog.Logger) {
	redis.SetLogger(debugLogger{log})
}

type debugLogger struct{ log *slog.Logger }

func (l debugLogger) Printf(ctx context.Context, format string, v ...any) {
	if l.log.Enabled(ctx, slog.LevelDebug) {
		l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
	}
}
