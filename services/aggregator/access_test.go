package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bearer adds a key to every request of a client.
type bearer struct {
	key  string
	next http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.next.RoundTrip(r)
}

// as returns a client of the same server that sends key.
func (c *client) as(key string) *client {
	return &client{t: c.t, base: c.base, http: &http.Client{Timeout: c.http.Timeout, Transport: bearer{key, c.http.Transport}}}
}

func (c *client) status(method, path string) int {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func writeKeys(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// TestScopedKeysAndRateLimit: the all-in-one with a key file and a rate
// limit: 403 beyond a key's scope, reads limited to the key's topics, a key
// file change applied without a restart, and 429 with Retry-After counted in
// /metrics.
func TestScopedKeysAndRateLimit(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.json")
	writeKeys(t, keys, `{"keys": [
		{"name": "shop", "key": "shop-key-00000001", "scope": "publish", "topics": ["orders."]},
		{"name": "dash", "key": "dash-key-00000001", "scope": "read", "topics": ["orders."]},
		{"name": "admin", "key": "admin-key-0000001", "scope": "both"}]}`, time.Unix(1000, 0))
	c, _ := startInProcess(t, t.TempDir(), "--api-keys", "listed-key", "--api-keys-file", keys,
		"--rate-limit", "0.001", "--rate-burst", "4")
	shop, dash, admin := c.as("shop-key-00000001"), c.as("dash-key-00000001"), c.as("admin-key-0000001")

	shop.mustPublish([]testEvent{ev("orders.eu", "1"), ev("orders.us", "2")})
	admin.mustPublish([]testEvent{ev("clicks", "3")})
	c.as("listed-key").mustPublish([]testEvent{ev("clicks", "4")})
	if code, body, _ := shop.publish(ev("clicks", "5")); code != http.StatusForbidden {
		t.Errorf("shop publishing to clicks: %d %s, want 403", code, body)
	}
	if code, _, _ := dash.publish(ev("orders.eu", "6")); code != http.StatusForbidden {
		t.Errorf("read key publishing: %d, want 403", code)
	}
	if code := shop.status("GET", "/stats"); code != http.StatusForbidden {
		t.Errorf("publish key reading: %d, want 403", code)
	}
	if code := dash.status("GET", "/events?topic=clicks"); code != http.StatusForbidden {
		t.Errorf("dash reading clicks: %d, want 403", code)
	}
	if got := idsOf(dash.allEvents("", 1)); len(got) != 2 || !got["orders.eu/1"] || !got["orders.us/2"] {
		t.Errorf("dash sees %v, want the two orders", got)
	}
	if s := dash.stats(); s.Received != 2 || strings.Join(s.Topics, ",") != "orders.eu,orders.us" {
		t.Errorf("dash stats %+v, want orders only", s)
	}
	if s := admin.stats(); s.Received != 4 {
		t.Errorf("admin stats %+v, want all 4", s)
	}

	// The shop's bucket holds 4; 2 are spent.
	if code, body, _ := shop.publish([]testEvent{ev("orders.eu", "7"), ev("orders.eu", "8"), ev("orders.eu", "9")}); code != http.StatusTooManyRequests {
		t.Errorf("over the rate: %d %s, want 429", code, body)
	}
	req, _ := http.NewRequest(http.MethodPost, c.base+"/publish", strings.NewReader(`[`+
		strings.Repeat(`{"topic":"orders.x","event_id":"r","timestamp":"2026-11-25T10:00:00Z","source":"s"},`, 2)+
		`{"topic":"orders.x","event_id":"r","timestamp":"2026-11-25T10:00:00Z","source":"s"}]`))
	resp, err := shop.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != http.StatusTooManyRequests || err != nil || s < 1 {
		t.Errorf("429 with Retry-After %q (status %d)", resp.Header.Get("Retry-After"), resp.StatusCode)
	}
	var metrics strings.Builder
	mresp, err := c.http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(&metrics, mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(metrics.String(), `aggregator_rate_limited_requests_total{key="shop"} 2`) ||
		!strings.Contains(metrics.String(), `aggregator_rate_limited_events_total{key="shop"} 6`) {
		t.Errorf("/metrics lacks the rate-limited counts of shop")
	}

	// A new key file takes effect without a restart: shop loses its key,
	// a new key appears; the listed key stays.
	writeKeys(t, keys, `{"keys": [{"name": "late", "key": "late-key-00000001", "scope": "both"}]}`, time.Unix(2000, 0))
	late := c.as("late-key-00000001")
	deadline := time.Now().Add(30 * time.Second)
	for late.status("GET", "/stats") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the new key file was not applied in 30 s")
		}
		time.Sleep(50 * time.Millisecond) // polling the condition, not timing
	}
	if code := shop.status("POST", "/publish"); code != http.StatusUnauthorized {
		t.Errorf("removed key: %d, want 401", code)
	}
	if code := c.as("listed-key").status("GET", "/stats"); code != http.StatusOK {
		t.Errorf("listed key after reload: %d", code)
	}
}
