package postgres

import (
	"context"
	"log/slog"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/startup"
)

// pingTimeout bounds one attempt: a dial to an address that drops packets
// would otherwise wait for the kernel's TCP timeout.
const pingTimeout = 5 * time.Second

// Up is one attempt at reaching Postgres, bounded: the readiness step of
// the binaries.
func (s *Store) Up(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	return s.Ping(ctx)
}

// Await pings, with jittered and capped backoff, until Postgres answers or
// ctx ends: in a fresh stack the database often starts after the services.
func (s *Store) Await(ctx context.Context, log *slog.Logger) error {
	return startup.Retry(ctx, log, "postgres", startup.Backoff{}, s.Up)
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
