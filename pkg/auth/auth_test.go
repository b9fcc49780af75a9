package auth

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const keyFile = `{"keys": [
	{"name": "shop", "key": "publish-orders-0001", "scope": "publish", "topics": ["orders.", "billing"]},
	{"name": "dash", "key": "read-orders-000001", "scope": "read", "topics": ["orders."]},
	{"name": "admin", "key": "both-everything-01", "scope": "both"}
]}`

// grantOf serves one request through Require and returns the status and
// the grant the handler saw.
func grantOf(t *testing.T, k *Keys, a Action, header string) (int, *Grant) {
	t.Helper()
	var seen *Grant
	h := k.Require(a, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = FromContext(r.Context())
	}))
	req := httptest.NewRequest("POST", "/x", nil)
	if header != "" {
		req.Header.Set("Authorization", header)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("%d without problem+json", rec.Code)
	}
	return rec.Code, seen
}

func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// An explicit, different time: the test must not depend on the
	// file system's clock resolution.
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestScopes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	writeFile(t, path, keyFile, time.Unix(1000, 0))
	k, err := LoadKeys([]string{"listed-key"}, path)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		a      Action
		header string
		want   int
		name   string
	}{
		{Publish, "", 401, ""},
		{Publish, "Bearer nope", 401, ""},
		{Publish, "Bearer publish-orders-0001", 200, "shop"},
		{Read, "Bearer publish-orders-0001", 403, ""},
		{Read, "Bearer read-orders-000001", 200, "dash"},
		{Publish, "Bearer read-orders-000001", 403, ""},
		{Publish, "bearer both-everything-01", 200, "admin"},
		{Read, "Bearer both-everything-01", 200, "admin"},
		{Read, "Bearer listed-key", 200, "env-1"},
		{Publish, "Bearer listed-key", 200, "env-1"},
	}
	for _, c := range cases {
		code, g := grantOf(t, k, c.a, c.header)
		if code != c.want {
			t.Errorf("%s with %q: %d, want %d", c.a, c.header, code, c.want)
		}
		if c.want == 200 && (g == nil || g.Name != c.name) {
			t.Errorf("%s with %q: grant %+v, want %q", c.a, c.header, g, c.name)
		}
	}
	_, shop := grantOf(t, k, Publish, "Bearer publish-orders-0001")
	for topic, want := range map[string]bool{"orders.eu": true, "orders.": true, "billing-2": true, "orders": false, "x": false} {
		if shop.Topic(topic) != want {
			t.Errorf("shop.Topic(%q) = %v", topic, !want)
		}
	}
	if shop.EveryTopic() {
		t.Error("shop covers every topic")
	}
	if _, admin := grantOf(t, k, Read, "Bearer both-everything-01"); !admin.EveryTopic() || !admin.Topic("anything") {
		t.Error("admin does not cover every topic")
	}
}

func TestNoKeysNoAuth(t *testing.T) {
	for _, k := range []*Keys{NewKeys(nil), NewKeys([]string{" ", ""})} {
		if code, g := grantOf(t, k, Publish, ""); code != 200 || g == nil || !g.Publish || !g.Read || !g.EveryTopic() {
			t.Errorf("no keys: %d %+v", code, g)
		}
	}
	// A key file, even with no key in it, closes the API.
	path := filepath.Join(t.TempDir(), "keys.json")
	writeFile(t, path, `{"keys":[]}`, time.Unix(1000, 0))
	k, err := LoadKeys(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := grantOf(t, k, Read, "Bearer anything-at-all-here"); code != 401 {
		t.Errorf("empty key file: %d, want 401", code)
	}
}

func TestKeyFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	writeFile(t, path, keyFile, time.Unix(1000, 0))
	k, err := LoadKeys(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := k.Reload(); changed || err != nil {
		t.Fatalf("unchanged file: reload %v %v", changed, err)
	}
	// The shop key becomes read-only; admin is removed; a new key appears.
	next := `{"keys": [
		{"name": "shop", "key": "publish-orders-0001", "scope": "read"},
		{"name": "new", "key": "a-brand-new-key-01", "scope": "publish"}]}`
	writeFile(t, path, next, time.Unix(2000, 0))
	if changed, err := k.Reload(); !changed || err != nil {
		t.Fatalf("changed file: reload %v %v", changed, err)
	}
	for _, c := range []struct {
		a      Action
		header string
		want   int
	}{
		{Publish, "Bearer publish-orders-0001", 403},
		{Read, "Bearer publish-orders-0001", 200},
		{Read, "Bearer both-everything-01", 401},
		{Publish, "Bearer a-brand-new-key-01", 200},
	} {
		if code, _ := grantOf(t, k, c.a, c.header); code != c.want {
			t.Errorf("after reload, %s with %q: %d, want %d", c.a, c.header, code, c.want)
		}
	}
	// A broken file is refused and the keys in use stay.
	writeFile(t, path, `{"keys": [{"name": "x", "key": "short", "scope": "both"}]}`, time.Unix(3000, 0))
	if _, err := k.Reload(); err == nil {
		t.Fatal("bad file reloaded")
	}
	if code, _ := grantOf(t, k, Publish, "Bearer a-brand-new-key-01"); code != 200 {
		t.Errorf("after a bad file, the keys in use changed: %d", code)
	}
}

// TestWatchReloads: the running watcher picks a new file up without any
// call from the test.
func TestWatchReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	writeFile(t, path, keyFile, time.Unix(1000, 0))
	k, err := LoadKeys(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { k.Watch(ctx, time.Millisecond, slogDiscard()); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	writeFile(t, path, `{"keys": [{"name": "late", "key": "late-arriving-key-1", "scope": "both"}]}`, time.Unix(2000, 0))
	deadline := time.Now().Add(10 * time.Second)
	for k.lookup("Bearer late-arriving-key-1") == nil {
		if time.Now().After(deadline) {
			t.Fatal("the watcher did not load the new key file")
		}
		time.Sleep(time.Millisecond) // polling a condition, not timing
	}
	if k.lookup("Bearer both-everything-01") != nil {
		t.Error("a key removed from the file still works")
	}
}

func TestBadKeyFiles(t *testing.T) {
	for name, content := range map[string]string{
		"not json":       `{"keys": [`,
		"unknown field":  `{"keys": [{"name": "a", "key": "0123456789abcdef", "scope": "both", "topic": ["x"]}]}`,
		"no name":        `{"keys": [{"key": "0123456789abcdef", "scope": "both"}]}`,
		"env name":       `{"keys": [{"name": "env-1", "key": "0123456789abcdef", "scope": "both"}]}`,
		"same name":      `{"keys": [{"name": "a", "key": "0123456789abcdef", "scope": "both"}, {"name": "a", "key": "0123456789abcdeg", "scope": "read"}]}`,
		"same key":       `{"keys": [{"name": "a", "key": "0123456789abcdef", "scope": "both"}, {"name": "b", "key": "0123456789abcdef", "scope": "read"}]}`,
		"short key":      `{"keys": [{"name": "a", "key": "short", "scope": "both"}]}`,
		"spaced key":     `{"keys": [{"name": "a", "key": " 0123456789abcdef", "scope": "both"}]}`,
		"bad scope":      `{"keys": [{"name": "a", "key": "0123456789abcdef", "scope": "write"}]}`,
		"no scope":       `{"keys": [{"name": "a", "key": "0123456789abcdef"}]}`,
		"trailing data":  `{"keys": []} {}`,
		"keys as object": `{"keys": {}}`,
	} {
		if _, err := parseFile([]byte(content)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := LoadKeys(nil, filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
