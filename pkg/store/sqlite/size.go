package sqlite

import (
	"context"
	"fmt"
)

// SizeBytes is the size of the database: its pages, including those still in
// the write-ahead log, times the page size.
func (s *Store) SizeBytes(ctx context.Context) (int64, error) {
	var n int64
	err := s.r.QueryRowContext(ctx,
		`SELECT p.page_count * s.page_size FROM pragma_page_count() AS p, pragma_page_size() AS s`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("sqlite size: %w", err)
	}
	return n, nil
}
