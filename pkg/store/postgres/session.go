package postgres

import (
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Session bounds what one pooled connection may hold. A worker stalled
// between the round trips of its batch transaction keeps the offset row lock
// that the new owner of its partitions waits for, and its transaction id
// holds back every reader of the (txid, seq) cursor; the server ends such a
// session after IdleInTransaction. Zero leaves a bound to the server's
// configuration (the role's or database's settings).
type Session struct {
	StatementTimeout  time.Duration // statement_timeout
	LockTimeout       time.Duration // lock_timeout
	IdleInTransaction time.Duration // idle_in_transaction_session_timeout
}

// Params returns the bounds as Postgres startup parameters, in milliseconds
// (a positive bound below one millisecond is one, not "off").
func (s Session) Params() map[string]string {
	out := map[string]string{}
	for name, d := range map[string]time.Duration{
		"statement_timeout":                   s.StatementTimeout,
		"lock_timeout":                        s.LockTimeout,
		"idle_in_transaction_session_timeout": s.IdleInTransaction,
	} {
		if d > 0 {
			out[name] = strconv.FormatInt(max(d.Milliseconds(), 1), 10)
		}
	}
	return out
}

// WithSession sends the bounds as startup parameters of every connection
// of the pool, so they hold from the first statement of each session and
// across reconnects. They replace the same parameters given in the URL.
func WithSession(s Session) Option {
	return func(c *pgxpool.Config) {
		if c.ConnConfig.RuntimeParams == nil {
			c.ConnConfig.RuntimeParams = map[string]string{}
		}
		for k, v := range s.Params() {
			c.ConnConfig.RuntimeParams[k] = v
		}
	}
}
