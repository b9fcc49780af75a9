package testdeps

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisURL is where scripts/deps.sh starts Redis.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

const redisWait = 3 * time.Second

// RedisURL returns AGGREGATOR_TEST_REDIS_URL (default DefaultRedisURL) once
// Redis answers PING there, and fails the test when it does not within a few
// seconds.
func RedisURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("AGGREGATOR_TEST_REDIS_URL")
	if url == "" {
		url = DefaultRedisURL
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("AGGREGATOR_TEST_REDIS_URL=%q: %v", url, err)
	}
	opt.DialTimeout = 500 * time.Millisecond
	opt.ReadTimeout = time.Second
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	c := redis.NewClient(opt)
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), redisWait)
	defer cancel()
	for {
		err = c.Ping(ctx).Err()
		if err == nil {
			return url
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Redis unreachable at %s: %v\nstart it with: scripts/deps.sh up redis (or set AGGREGATOR_TEST_REDIS_URL)", opt.Addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RedisServerBinary returns the path of redis-server, for tests that start,
// stop and restart a private server, and fails the test when it is missing.
func RedisServerBinary(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found (%v): run scripts/deps.sh up redis, which installs it", err)
	}
	return path
}
