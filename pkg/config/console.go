package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Console configures what the query service's web console reads besides
// Postgres: the workers' metrics, for the consumer lag per partition.
type Console struct {
	WorkerMetricsURLs []string `name:"worker-metrics-urls" env:"AGGREGATOR_WORKER_METRICS_URLS" sep:"," help:"Comma-separated /metrics URLs of the workers (http://worker-1:8082/metrics,...; dns+http://name:8082/metrics reads every address name resolves to, e.g. a headless Service); the console shows the consumer lag per partition they report (none: no lag shown)."`
}

func (c *Console) validate() error {
	var errs []error
	for _, s := range c.WorkerMetricsURLs {
		// "dns+http://name:port/metrics": every address of name, as a
		// headless Service lists its pods.
		u, err := url.Parse(strings.TrimPrefix(s, "dns+"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--worker-metrics-urls: %q is not an http(s) URL", s))
		}
	}
	return errors.Join(errs...)
}
