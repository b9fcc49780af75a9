package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// FileEntry is one key of a key file:
//
//	{"keys": [{"name": "shop", "key": "…", "scope": "publish", "topics": ["orders."]}]}
//
// scope is publish, read or both; topics are prefixes, and no topics means
// every topic.
type FileEntry struct {
	Name   string   `json:"name"`
	Key    string   `json:"key"`
	Scope  string   `json:"scope"`
	Topics []string `json:"topics"`
}

// parseFile reads a key file's content; any mistake fails the whole file,
// so a typo can never widen or drop a key silently.
func parseFile(b []byte) ([]entry, error) {
	var f struct {
		Keys []FileEntry `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if dec.More() {
		return nil, errors.New("parse: data after the JSON object")
	}
	names := map[string]bool{}
	digests := map[[sha256.Size]byte]bool{}
	out := make([]entry, 0, len(f.Keys))
	for i, k := range f.Keys {
		g := &Grant{Name: k.Name}
		switch {
		case k.Name == "" || strings.HasPrefix(k.Name, "env-"):
			return nil, fmt.Errorf("key %d: name must be set and not start with \"env-\"", i)
		case names[k.Name]:
			return nil, fmt.Errorf("key %d: name %q is used twice", i, k.Name)
		case strings.TrimSpace(k.Key) != k.Key || len(k.Key) < 16:
			return nil, fmt.Errorf("key %q: the key must be at least 16 characters, without surrounding spaces", k.Name)
		}
		switch k.Scope {
		case "publish":
			g.Publish = true
		case "read":
			g.Read = true
		case "both":
			g.Publish, g.Read = true, true
		default:
			return nil, fmt.Errorf("key %q: scope %q is not publish, read or both", k.Name, k.Scope)
		}
		if len(k.Topics) > 0 {
			g.Prefixes = append([]string{}, k.Topics...)
		}
		d := sha256.Sum256([]byte(k.Key))
		if digests[d] {
			return nil, fmt.Errorf("key %q: the same key is listed twice", k.Name)
		}
		names[k.Name], digests[d] = true, true
		out = append(out, entry{digest: d, grant: g})
	}
	return out, nil
}

// fileSource remembers what was last read from the key file.
type fileSource struct {
	mu      sync.Mutex
	path    string
	modTime time.Time
	size    int64
}

// LoadKeys returns the keys of the plain list (full scope) and of the key
// file at path (none when path is ""). A file that cannot be read or parsed
// is an error.
func LoadKeys(list []string, path string) (*Keys, error) {
	k := NewKeys(list)
	if path == "" {
		return k, nil
	}
	k.enabled = true
	k.file = &fileSource{path: path}
	if _, err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload reads the key file again if its modification time or size changed,
// and reports whether it did. On error the keys in use stay.
func (k *Keys) Reload() (bool, error) {
	if k.file == nil {
		return false, nil
	}
	k.file.mu.Lock()
	defer k.file.mu.Unlock()
	fi, err := os.Stat(k.file.path)
	if err != nil {
		return false, fmt.Errorf("key file: %w", err)
	}
	if fi.ModTime().Equal(k.file.modTime) && fi.Size() == k.file.size {
		return false, nil
	}
	// Remember the version even if it is bad, so it is reported once.
	k.file.modTime, k.file.size = fi.ModTime(), fi.Size()
	b, err := os.ReadFile(k.file.path)
	if err != nil {
		return false, fmt.Errorf("key file: %w", err)
	}
	entries, err := parseFile(b)
	if err != nil {
		return false, fmt.Errorf("key file %s: %w", k.file.path, err)
	}
	k.set(entries)
	return true, nil
}

// Watch polls the key file every interval until ctx ends, switching to its
// new keys when it changes. A bad new file is logged and the keys in use
// stay. Polling the modification time also sees a Kubernetes Secret volume
// update, which swaps a symlink rather than writing the file.
func (k *Keys) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if k.file == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		switch changed, err := k.Reload(); {
		case err != nil:
			log.ErrorContext(ctx, "key file not reloaded; the keys in use stay", "err", err)
		case changed:
			log.InfoContext(ctx, "key file reloaded", "path", k.file.path, "keys", len(*k.cur.Load()))
		}
	}
}

// PollInterval is how often a running binary checks its key file.
const PollInterval = 2 * time.Second

// Open loads the keys and, with a key file, watches it until ctx ends.
func Open(ctx context.Context, list []string, path string, log *slog.Logger) (*Keys, error) {
	k, err := LoadKeys(list, path)
	if err != nil {
		return nil, err
	}
	go k.Watch(ctx, PollInterval, log)
	return k, nil
}
