package postgres

import (
	"context"
	"fmt"
)

// SizeBytes is the disk size of the database the store lives in (tables,
// indexes, TOAST), as Postgres reports it.
func (s *Store) SizeBytes(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres size: %w", err)
	}
	return n, nil
}
