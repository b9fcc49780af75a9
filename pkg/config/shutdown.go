package config

import (
	"errors"
	"fmt"
	"time"
)

// Shutdown shapes how a binary stops on SIGTERM: readiness turns false at
// once, the server keeps serving for Delay (while load balancers and
// Kubernetes endpoints stop routing to it), then it stops accepting and
// gives in-flight work up to Timeout before flushing and exiting.
type Shutdown struct {
	ShutdownDelay   time.Duration `name:"shutdown-delay" env:"AGGREGATOR_SHUTDOWN_DELAY" default:"0s" help:"On SIGTERM, how long to keep serving with readiness false before the server stops accepting (set it above the time endpoints take to drop the instance)."`
	ShutdownTimeout time.Duration `name:"shutdown-timeout" env:"AGGREGATOR_SHUTDOWN_TIMEOUT" default:"20s" help:"On SIGTERM, how long in-flight requests and batches may take to finish once the server stops accepting."`
}

func (s Shutdown) validate() error {
	var errs []error
	if s.ShutdownDelay < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-delay %v must not be negative", s.ShutdownDelay))
	}
	if s.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %v must be positive", s.ShutdownTimeout))
	}
	return errors.Join(errs...)
}
