// Package auth guards handlers with API keys. Each key has a scope: publish,
// read or both, over every topic or only those starting with given prefixes.
// Keys come from a list (full scope) and from a key file that is read again
// whenever it changes.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/event-aggregator/event-aggregator/pkg/problem"
)

// Action is what a request does with events.
type Action int

// The actions a scope may allow.
const (
	Publish Action = iota
	Read
)

func (a Action) String() string {
	if a == Publish {
		return "publish"
	}
	return "read"
}

// Grant is what one key may do. The zero value may do nothing.
type Grant struct {
	// Name identifies the key in metrics, logs and rate limits; never the
	// key itself.
	Name          string
	Publish, Read bool
	// Prefixes limit the topics; nil means every topic.
	Prefixes []string
}

// open is the grant of every request when no key is configured.
func open() *Grant { return &Grant{Publish: true, Read: true} }

// Can reports whether the grant allows the action at all.
func (g *Grant) Can(a Action) bool {
	if a == Publish {
		return g.Publish
	}
	return g.Read
}

// Topic reports whether the grant covers topic.
func (g *Grant) Topic(topic string) bool {
	if g.Prefixes == nil {
		return true
	}
	for _, p := range g.Prefixes {
		if strings.HasPrefix(topic, p) {
			return true
		}
	}
	return false
}

// EveryTopic reports whether the grant covers every topic.
func (g *Grant) EveryTopic() bool { return g.Prefixes == nil }

type grantKey struct{}

// FromContext returns the grant of the request: every right when keys are
// off.
func FromContext(ctx context.Context) *Grant {
	if g, ok := ctx.Value(grantKey{}).(*Grant); ok {
		return g
	}
	return open()
}

// WithGrant returns ctx carrying g.
func WithGrant(ctx context.Context, g *Grant) context.Context {
	return context.WithValue(ctx, grantKey{}, g)
}

// entry is one accepted key, kept as a digest so comparing takes the same
// time whatever the key's length or content.
type entry struct {
	digest [sha256.Size]byte
	grant  *Grant
}

// Keys holds the accepted keys. The set can be swapped while requests run.
type Keys struct {
	enabled bool
	env     []entry
	cur     atomic.Pointer[[]entry]
	file    *fileSource // nil without a key file
}

// NewKeys returns the set of keys of a plain list, each with full scope;
// empty strings are ignored. No key means no authentication.
func NewKeys(keys []string) *Keys {
	k := &Keys{}
	for _, key := range keys {
		if key = strings.TrimSpace(key); key != "" {
			n := len(k.env) + 1
			k.env = append(k.env, entry{digest: sha256.Sum256([]byte(key)),
				grant: &Grant{Name: fmt.Sprintf("env-%d", n), Publish: true, Read: true}})
		}
	}
	k.enabled = len(k.env) > 0
	k.set(nil)
	return k
}

func (k *Keys) set(fromFile []entry) {
	all := append(append([]entry(nil), k.env...), fromFile...)
	k.cur.Store(&all)
}

// Enabled reports whether requests need a key: some key is listed, or a key
// file is configured (even an empty one: a file never opens the API).
func (k *Keys) Enabled() bool { return k.enabled }

// Require wraps next so it needs "Authorization: Bearer <key>" of a key
// allowed to do a, when keys are enabled; otherwise next is returned
// unchanged. The key's grant is in the request's context.
func (k *Keys) Require(a Action, next http.Handler) http.Handler {
	if !k.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := k.lookup(r.Header.Get("Authorization"))
		if g == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="event-aggregator"`)
			problem.Write(w, http.StatusUnauthorized, "a valid 'Authorization: Bearer <key>' header is required", nil)
			return
		}
		if !g.Can(a) {
			problem.Write(w, http.StatusForbidden, fmt.Sprintf("this key may not %s events", a), nil)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithGrant(r.Context(), g)))
	})
}

func (k *Keys) lookup(header string) *Grant {
	const prefix = "Bearer "
	if len(header) <= len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return nil
	}
	got := sha256.Sum256([]byte(header[len(prefix):]))
	var found *Grant
	for _, e := range *k.cur.Load() {
		if subtle.ConstantTimeCompare(got[:], e.digest[:]) == 1 && found == nil {
			found = e.grant
		}
	}
	return found
}
