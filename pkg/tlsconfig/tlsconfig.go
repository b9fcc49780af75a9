// Package tlsconfig builds client TLS configurations from files, the way
// secrets reach a process on Kubernetes (Secret mounts) and in compose. Kafka
// and Redis clients share it, so a CA bundle, a client certificate for mutual
// TLS and a server name mean the same thing for every dependency.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Files names the PEM files and options of a client TLS connection. The zero
// value verifies the server against the system roots.
type Files struct {
	CAFile             string // PEM bundle of trusted CAs; empty: the system roots
	CertFile           string // client certificate for mutual TLS; needs KeyFile
	KeyFile            string // client private key for mutual TLS; needs CertFile
	ServerName         string // name to verify instead of the dialled host
	InsecureSkipVerify bool   // accept any server certificate: for tests only
}

// Config loads the files into a *tls.Config. Errors name the file at fault,
// so a wrong mount is one clear log line.
func (f Files) Config() (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         f.ServerName,
		InsecureSkipVerify: f.InsecureSkipVerify, //nolint:gosec // explicit opt-in, off by default
	}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", f.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.CertFile != "" && f.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case f.CertFile != "" || f.KeyFile != "":
		return nil, errors.New("client certificate and key must be given together")
	}
	return cfg, nil
}
