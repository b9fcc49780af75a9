package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScopedKeysDistributed: ingest and query read the same key file; a key
// goes no further than its scope in either, the rate limit answers 429 with
// Retry-After, and a changed key file applies to both without a restart.
func TestScopedKeysDistributed(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.json")
	writeKeyFile(t, keys, `{"keys": [
		{"name": "shop", "key": "shop-key-00000001", "scope": "publish", "topics": ["orders."]},
		{"name": "dash", "key": "dash-key-00000001", "scope": "read", "topics": ["orders."]},
		{"name": "admin", "key": "admin-key-0000001", "scope": "both"}]}`, time.Unix(1000, 0))
	s := newStack(t, stackOptions{workers: 1,
		ingestEnv: map[string]string{"AGGREGATOR_API_KEYS_FILE": keys, "AGGREGATOR_RATE_LIMIT": "0.001", "AGGREGATOR_RATE_BURST": "3"},
		queryEnv:  map[string]string{"AGGREGATOR_API_KEYS_FILE": keys},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	do := func(method, url, key, body string) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := s.http.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	event := func(topic, id string) string {
		return `{"topic":"` + topic + `","event_id":"` + id + `","timestamp":"2026-11-25T10:00:00Z","source":"e2e","payload":{ "x" : "<&>" }}`
	}
	pub, q := s.ingestURL()+"/publish", s.queryURL()
	const shop, dash, admin = "shop-key-00000001", "dash-key-00000001", "admin-key-0000001"

	for _, c := range []struct {
		key, body string
		want      int
	}{
		{"", event("orders.eu", "1"), 401},
		{dash, event("orders.eu", "1"), 403},
		{shop, event("clicks", "1"), 403},
		{shop, "[" + event("orders.eu", "1") + "," + event("orders.us", "2") + "]", 202},
		{admin, event("clicks", "3"), 202},
	} {
		if code, _, body := do("POST", pub, c.key, c.body); code != c.want {
			t.Errorf("publish as %q: %d %s, want %d", c.key, code, body, c.want)
		}
	}
	code, h, body := do("POST", pub, shop, "["+event("orders.eu", "4")+","+event("orders.eu", "5")+"]")
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Errorf("over the rate: %d %s Retry-After %q, want 429 with it", code, body, h.Get("Retry-After"))
	}

	// Wait until the three events are stored, then read as each key.
	if !waitFor(ctx, 100*time.Millisecond, func() bool {
		code, _, body := do("GET", q+"/stats", admin, "")
		var st stats
		return code == 200 && json.Unmarshal(body, &st) == nil && st.Unique == 3
	}) {
		t.Fatal("the events were not stored")
	}
	// /events serves a row once every transaction older than its own has
	// ended, a moment after /stats counts it.
	if !waitFor(ctx, 100*time.Millisecond, func() bool {
		code, _, body = do("GET", q+"/events", dash, "")
		return code == 200 && strings.Count(string(body), `"topic":"orders.`) == 2
	}) {
		t.Fatalf("dash /events: %d %s, want the two orders", code, body)
	}
	if strings.Contains(string(body), "clicks") || strings.Count(string(body), `"payload":{ "x" : "<&>" }`) != 2 {
		t.Errorf("dash /events: %s, want the two orders only, with their payloads as sent", body)
	}
	code, _, body = do("GET", q+"/stats", dash, "")
	var st stats
	if code != 200 || json.Unmarshal(body, &st) != nil || st.Received != 2 || strings.Join(st.Topics, ",") != "orders.eu,orders.us" {
		t.Errorf("dash /stats: %d %s, want orders only", code, body)
	}
	if code, _, _ := do("GET", q+"/events?topic=clicks", dash, ""); code != 403 {
		t.Errorf("dash reading clicks: %d, want 403", code)
	}
	if code, _, _ := do("GET", q+"/stats", shop, ""); code != 403 {
		t.Errorf("publish key reading: %d, want 403", code)
	}

	// A new key file reaches both binaries without a restart.
	writeKeyFile(t, keys, `{"keys": [{"name": "late", "key": "late-key-00000001", "scope": "both"}]}`, time.Unix(2000, 0))
	if !waitFor(ctx, 100*time.Millisecond, func() bool {
		code, _, _ := do("GET", q+"/stats", "late-key-00000001", "")
		return code == 200
	}) {
		t.Fatal("query did not apply the new key file")
	}
	// Each try spends the key's rate only once it is known: stop at the
	// first answer that is not 401.
	code = 0
	if !waitFor(ctx, 100*time.Millisecond, func() bool {
		code, _, body = do("POST", pub, "late-key-00000001", event("late", "1"))
		return code != 401
	}) || code != 202 {
		t.Fatalf("ingest did not apply the new key file: %d %s", code, body)
	}
	if code, _, _ := do("GET", q+"/stats", admin, ""); code != 401 {
		t.Errorf("removed key on query: %d, want 401", code)
	}
}

func writeKeyFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}
