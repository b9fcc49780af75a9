package redis_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/claim/claimtest"
	claimredis "github.com/event-aggregator/event-aggregator/pkg/claim/redis"
	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/testdeps"
	"github.com/event-aggregator/event-aggregator/pkg/tlsconfig"
)

// tlsServer is the TLS port of the Redis scripts/deps/redis.sh runs and the
// CA that signed its certificate.
func tlsServer(t *testing.T) (url, caFile string) {
	t.Helper()
	url, caFile = os.Getenv("AGGREGATOR_TEST_REDIS_TLS_URL"), os.Getenv("AGGREGATOR_TEST_REDIS_TLS_CA_FILE")
	if url == "" || caFile == "" {
		t.Fatal("AGGREGATOR_TEST_REDIS_TLS_URL and AGGREGATOR_TEST_REDIS_TLS_CA_FILE are not set: " +
			"eval \"$(scripts/deps.sh env)\" (scripts/test.sh does)")
	}
	return url, caFile
}

// TestContractOverTLS: the claim protocol over rediss:// with the CA file.
func TestContractOverTLS(t *testing.T) {
	url, ca := tlsServer(t)
	client, err := claimredis.NewClient(url, claimredis.WithTLSFiles(tlsconfig.Files{CAFile: ca}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if err := client.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("PING over TLS: %v", err)
	}
	claimtest.Run(t, func(t *testing.T, owner string, cfg claimtest.Config) process.Claimer {
		return claimredis.New(client, owner, cfg.LeaseTTL, cfg.DedupWindow, claimredis.WithKeyPrefix("ea:claimtest:tls:"))
	})
}

// TestTLSRefused: the TLS port takes no plaintext, a server signed by
// another CA is refused, and TLS files with a redis:// URL are a mistake
// reported at start.
func TestTLSRefused(t *testing.T) {
	url, ca := tlsServer(t)

	plain, err := claimredis.NewClient("redis" + strings.TrimPrefix(url, "rediss"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.Ping(t.Context()).Err(); err == nil {
		t.Fatal("a plaintext PING to the TLS port succeeded: the server does not require TLS there")
	}

	other, err := claimredis.NewClient(url, claimredis.WithTLSFiles(tlsconfig.Files{CAFile: testdeps.OtherCAFile(t)}))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	err = other.Ping(t.Context()).Err()
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("PING with a CA that did not sign the server: %v; want an unknown-authority error", err)
	}
	t.Logf("wrong CA: %v", err)

	_, err = claimredis.NewClient("redis"+strings.TrimPrefix(url, "rediss"),
		claimredis.WithTLSFiles(tlsconfig.Files{CAFile: ca}))
	if err == nil || !strings.Contains(err.Error(), "rediss://") {
		t.Fatalf("TLS files with a redis:// URL: %v; want an error naming rediss://", err)
	}
	_, err = claimredis.NewClient(url, claimredis.WithTLSFiles(tlsconfig.Files{CAFile: filepath.Join(t.TempDir(), "missing.pem")}))
	if err == nil || !strings.Contains(err.Error(), "CA bundle") {
		t.Fatalf("a missing CA file: %v; want an error naming the CA bundle", err)
	}
}

// TestTLSOptions: the files replace go-redis's default TLS configuration
// and keep the URL's host as the name to verify.
func TestTLSOptions(t *testing.T) {
	ca := testdeps.OtherCAFile(t)
	c, err := claimredis.NewClient("rediss://cache.internal:6380/0", claimredis.WithTLSFiles(tlsconfig.Files{CAFile: ca}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cfg := c.Options().TLSConfig
	if cfg == nil || cfg.RootCAs == nil || cfg.ServerName != "cache.internal" || cfg.InsecureSkipVerify {
		t.Fatalf("TLS config %+v; want the CA as roots, server name cache.internal, verification on", cfg)
	}
	if got := c.Options().DialTimeout; got != time.Second {
		t.Fatalf("dial timeout over TLS %v; want 1s, room for the handshake", got)
	}
	c2, err := claimredis.NewClient("rediss://cache.internal:6380/0")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if cfg := c2.Options().TLSConfig; cfg == nil || cfg.RootCAs != nil {
		t.Fatalf("without files: TLS config %+v; want go-redis's default (system roots)", cfg)
	}
}
