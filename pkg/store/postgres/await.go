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

// migrateTimeout bounds the `migrate` subcommand, waiting included.
const migrateTimeout = 5 * time.Minute

// MigrateWhenReady is the `migrate` subcommand of the binaries (a Helm hook
// Job): wait for Postgres, apply the migrations, close.
func MigrateWhenReady(ctx context.Context, url string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	s, err := Open(ctx, url, 1)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Await(ctx, log); err != nil {
		return err
	}
	if err := s.Migrate(ctx); err != nil {
		return err
	}
	log.Info("migrations applied")
	return nil
}
