package redis

import (
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/event-aggregator/event-aggregator/pkg/tlsconfig"
)

// tlsDialTimeout replaces dialTimeout for rediss:// URLs: the TLS handshake
// is part of the dial, and its round trips and CPU on a loaded machine need
// more than a TCP connect.
const tlsDialTimeout = time.Second

// ClientOption configures NewClient.
type ClientOption func(*clientOptions)

type clientOptions struct {
	tls tlsconfig.Files
}

// WithTLSFiles verifies a rediss:// server against the CA bundle in f (the
// system roots when empty) and presents f's client certificate to servers
// that require mutual TLS. The zero Files changes nothing. The name verified
// is the URL's host unless f names another.
func WithTLSFiles(f tlsconfig.Files) ClientOption {
	return func(o *clientOptions) { o.tls = f }
}

// applyTLS replaces the TLS configuration go-redis derives from a rediss://
// URL with the one the files describe.
func applyTLS(opt *redis.Options, o clientOptions) error {
	if o.tls == (tlsconfig.Files{}) {
		return nil
	}
	if opt.TLSConfig == nil {
		return errors.New("redis TLS files are set but the URL is redis://: use rediss:// to connect over TLS")
	}
	f := o.tls
	if f.ServerName == "" {
		f.ServerName = opt.TLSConfig.ServerName
	}
	cfg, err := f.Config()
	if err != nil {
		return fmt.Errorf("redis TLS: %w", err)
	}
	opt.TLSConfig = cfg
	return nil
}
