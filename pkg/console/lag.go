package console

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// lagMetric is the gauge each worker exports per partition it consumes.
const lagMetric = "aggregator_kafka_consumer_lag"

// maxMetricsBytes bounds what one worker's /metrics may make us read.
const maxMetricsBytes = 8 << 20

// Lag is the consumer lag as the workers report it.
type Lag struct {
	Partitions []PartitionLag `json:"partitions"`
	// Unreachable lists the workers that did not answer (host:port).
	Unreachable []string `json:"unreachable"`
}

// PartitionLag is one partition's lag and the worker consuming it.
type PartitionLag struct {
	Partition int    `json:"partition"`
	Lag       int64  `json:"lag"`
	Worker    string `json:"worker"`
}

// lag asks every worker at once; a partition reported twice (during a
// rebalance) keeps the larger lag.
func (c *Console) lag(ctx context.Context) *Lag {
	type result struct {
		worker string
		parts  map[int]int64
		err    error
	}
	urls, unresolved := c.targets(ctx)
	results := make([]result, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() {
			parts, err := c.scrape(ctx, u)
			results[i] = result{worker: hostOf(u), parts: parts, err: err}
		})
	}
	wg.Wait()
	out := &Lag{Partitions: []PartitionLag{}, Unreachable: unresolved}
	seen := map[int]int{}
	for _, r := range results {
		if r.err != nil {
			c.o.Log.WarnContext(ctx, "worker metrics unreadable", "worker", r.worker, "err", r.err)
			out.Unreachable = append(out.Unreachable, r.worker)
			continue
		}
		for p, n := range r.parts {
			if i, ok := seen[p]; ok {
				if n > out.Partitions[i].Lag {
					out.Partitions[i] = PartitionLag{p, n, r.worker}
				}
				continue
			}
			seen[p] = len(out.Partitions)
			out.Partitions = append(out.Partitions, PartitionLag{p, n, r.worker})
		}
	}
	slices.SortFunc(out.Partitions, func(a, b PartitionLag) int { return a.Partition - b.Partition })
	return out
}

// dnsPrefix marks a URL whose host stands for every address it resolves
// to, as the name of a Kubernetes headless Service does for its pods.
const dnsPrefix = "dns+"

// targets expands the "dns+" URLs into one URL per address; the names that
// do not resolve are returned apart.
func (c *Console) targets(ctx context.Context) (urls, unresolved []string) {
	unresolved = []string{}
	for _, raw := range c.o.WorkerMetrics {
		rest, ok := strings.CutPrefix(raw, dnsPrefix)
		if !ok {
			urls = append(urls, raw)
			continue
		}
		u, err := url.Parse(rest)
		if err != nil {
			unresolved = append(unresolved, hostOf(rest))
			continue
		}
		addrs, err := c.o.LookupHost(ctx, u.Hostname())
		if err != nil || len(addrs) == 0 {
			c.o.Log.WarnContext(ctx, "worker name unresolved", "host", u.Hostname(), "err", err)
			unresolved = append(unresolved, u.Host)
			continue
		}
		slices.Sort(addrs)
		for _, a := range addrs {
			one := *u
			one.Host = net.JoinHostPort(a, u.Port())
			if u.Port() == "" {
				one.Host = hostOnly(a)
			}
			urls = append(urls, one.String())
		}
	}
	return urls, unresolved
}

// hostOnly brackets an IPv6 address for a URL without a port.
func hostOnly(a string) string {
	if strings.Contains(a, ":") {
		return "[" + a + "]"
	}
	return a
}

func (c *Console) scrape(ctx context.Context, u string) (map[int]int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("worker metrics request: %w", err)
	}
	req.Header.Set("Accept", "text/plain")
	res, err := c.o.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get worker metrics: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get worker metrics: status %d", res.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(io.LimitReader(res.Body, maxMetricsBytes))
	if err != nil {
		return nil, fmt.Errorf("parse worker metrics: %w", err)
	}
	parts := map[int]int64{}
	if f, ok := families[lagMetric]; ok {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "partition" {
					continue
				}
				if p, err := strconv.Atoi(l.GetValue()); err == nil {
					parts[p] = int64(m.GetGauge().GetValue())
				}
			}
		}
	}
	return parts, nil
}

// hostOf names a worker by host:port, never with credentials or a query.
func hostOf(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Host
	}
	return "worker"
}
