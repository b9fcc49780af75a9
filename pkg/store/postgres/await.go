package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Await pings until Postgres answers or ctx ends: in a fresh stack the
// database often starts after the services.
func (s *Store) Await(ctx context.Context, log *slog.Logger) error {
	for {
		err := s.Ping(ctx)
		if err == nil {
			return nil
		}
		log.Warn("postgres not ready; retrying", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("await postgres: %w", err)
		case <-time.After(time.Second):
		}
	}
}
