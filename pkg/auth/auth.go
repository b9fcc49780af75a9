// Package auth guards handlers with static API keys.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/event-aggregator/event-aggregator/pkg/problem"
)

// Keys holds the accepted API keys as digests, so comparing takes the same
// time whatever the key's length or content.
type Keys struct{ digests [][sha256.Size]byte }

// NewKeys returns the set of keys; empty strings are ignored. No key means no
// authentication.
func NewKeys(keys []string) *Keys {
	k := &Keys{}
	for _, key := range keys {
		if key = strings.TrimSpace(key); key != "" {
			k.digests = append(k.digests, sha256.Sum256([]byte(key)))
		}
	}
	return k
}

// Enabled reports whether any key is configured.
func (k *Keys) Enabled() bool { return len(k.digests) > 0 }

// Require wraps next so it needs "Authorization: Bearer <key>" when keys are
// configured; otherwise next is returned unchanged.
func (k *Keys) Require(next http.Handler) http.Handler {
	if !k.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !k.valid(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="event-aggregator"`)
			problem.Write(w, http.StatusUnauthorized, "a valid 'Authorization: Bearer <key>' header is required", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (k *Keys) valid(header string) bool {
	const prefix = "Bearer "
	if len(header) <= len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(header[len(prefix):]))
	ok := 0
	for _, d := range k.digests {
		ok |= subtle.ConstantTimeCompare(got[:], d[:])
	}
	return ok == 1
}
