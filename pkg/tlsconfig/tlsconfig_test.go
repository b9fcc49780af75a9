package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCA writes a self-signed CA and a server certificate for 127.0.0.1
// signed by it; it returns the CA path and the server's key pair.
func writeCA(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"broker.test"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return caPath, tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
}

// handshake dials a TLS server holding cert with the client configuration cfg.
func handshake(t *testing.T, cert tls.Certificate, cfg *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
	if err != nil {
		return err
	}
	return c.Close()
}

func TestConfigTrustsOnlyTheGivenCA(t *testing.T) {
	dir := t.TempDir()
	caPath, cert := writeCA(t, dir)

	cfg, err := Files{CAFile: caPath}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, cert, cfg); err != nil {
		t.Fatalf("server signed by the CA refused: %v", err)
	}
	cfg, err = Files{CAFile: caPath, ServerName: "broker.test"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, cert, cfg); err != nil {
		t.Fatalf("server name in the certificate refused: %v", err)
	}
	cfg, err = Files{CAFile: caPath, ServerName: "other.test"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, cert, cfg); err == nil {
		t.Fatal("a server name not in the certificate was accepted")
	}
	// The system roots do not hold the test CA.
	cfg, err = Files{}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, cert, cfg); err == nil {
		t.Fatal("an untrusted certificate was accepted without a CA bundle")
	}
}

func TestConfigErrorsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		files Files
		want  string
	}{
		"missing CA":   {Files{CAFile: filepath.Join(dir, "nope.pem")}, "read CA bundle"},
		"not PEM":      {Files{CAFile: notPEM}, "no PEM certificate"},
		"cert alone":   {Files{CertFile: notPEM}, "together"},
		"key alone":    {Files{KeyFile: notPEM}, "together"},
		"bad key pair": {Files{CertFile: notPEM, KeyFile: notPEM}, "client certificate"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.files.Config()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
