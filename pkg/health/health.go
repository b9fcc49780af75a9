// Package health serves the liveness and readiness probes.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"time"
)

// Check reports whether one dependency is reachable.
type Check func(ctx context.Context) error

// Live answers /healthz: the process is up. It checks no dependency, so a
// slow database never gets a healthy process restarted.
func Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
}

// Ready answers /readyz: 200 when every check passes within timeout, 503
// with each failure otherwise.
func Ready(timeout time.Duration, checks map[string]Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		failed := map[string]string{}
		for name, check := range checks {
			if err := check(ctx); err != nil {
				failed[name] = err.Error()
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "unavailable", "failed": failed})
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
	})
}

// Drain is the readiness of a stopping process: once Begin is called its
// Check fails, so load balancers stop routing new requests while the
// process still serves those that arrive meanwhile.
type Drain struct{ on atomic.Bool }

// Begin turns readiness false for good.
func (d *Drain) Begin() { d.on.Store(true) }

// Check fails once Begin was called.
func (d *Drain) Check(context.Context) error {
	if d.on.Load() {
		return errors.New("shutting down")
	}
	return nil
}
