package config

import (
	"errors"
	"time"
)

// PGBounds bounds every Postgres session of a binary, so a process
// that stalls (SIGSTOP, a frozen VM, a partition that keeps TCP alive) in the
// middle of a transaction cannot hold its row locks and its transaction id
// for longer than a few seconds. Zero turns a bound off, which a pooler that
// rejects startup parameters (PgBouncer in transaction mode) needs; set them
// on the role there instead (ALTER ROLE … SET).
type PGBounds struct {
	PostgresStatementTimeout         time.Duration `name:"postgres-statement-timeout" env:"AGGREGATOR_POSTGRES_STATEMENT_TIMEOUT" default:"30s" help:"Longest a Postgres statement may run before the server cancels it (0: no bound)."`
	PostgresLockTimeout              time.Duration `name:"postgres-lock-timeout" env:"AGGREGATOR_POSTGRES_LOCK_TIMEOUT" default:"5s" help:"Longest a Postgres statement waits for a lock before it fails and is retried (0: no bound)."`
	PostgresIdleInTransactionTimeout time.Duration `name:"postgres-idle-in-transaction-timeout" env:"AGGREGATOR_POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT" default:"10s" help:"Longest a Postgres session may sit idle inside a transaction before the server ends it, releasing its locks (0: no bound)."`
}

// RedisTLS names the files of a TLS connection to Redis. TLS itself is the
// rediss:// scheme of the URL; without a CA file the system roots verify
// the server.
type RedisTLS struct {
	RedisTLSCAFile   string `name:"redis-tls-ca-file" env:"AGGREGATOR_REDIS_TLS_CA_FILE" help:"PEM bundle of the CAs that sign the Redis server's certificate (rediss:// URLs; default: the system roots)."`
	RedisTLSCertFile string `name:"redis-tls-cert-file" env:"AGGREGATOR_REDIS_TLS_CERT_FILE" help:"Client certificate (PEM) for Redis servers that require mutual TLS; needs --redis-tls-key-file."`
	RedisTLSKeyFile  string `name:"redis-tls-key-file" env:"AGGREGATOR_REDIS_TLS_KEY_FILE" help:"Private key (PEM) of --redis-tls-cert-file."`
}

func (c *PGBounds) validate() error {
	var errs []error
	if c.PostgresStatementTimeout < 0 {
		errs = append(errs, errors.New("--postgres-statement-timeout must not be negative"))
	}
	if c.PostgresLockTimeout < 0 {
		errs = append(errs, errors.New("--postgres-lock-timeout must not be negative"))
	}
	if c.PostgresIdleInTransactionTimeout < 0 {
		errs = append(errs, errors.New("--postgres-idle-in-transaction-timeout must not be negative"))
	}
	return errors.Join(errs...)
}

func (c *RedisTLS) validate() error {
	if (c.RedisTLSCertFile == "") != (c.RedisTLSKeyFile == "") {
		return errors.New("--redis-tls-cert-file and --redis-tls-key-file must be given together")
	}
	return nil
}
