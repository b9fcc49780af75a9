package postgres

import (
	"context"
	"fmt"
)

// ID returns the random identity of this database, made by the migrations.
func (s *Store) ID(ctx context.Context) (string, error) {
	var id string
	if err := s.pool.QueryRow(ctx, `SELECT id FROM store_identity`).Scan(&id); err != nil {
		return "", fmt.Errorf("read store identity: %w", err)
	}
	return id, nil
}
