package config

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestWorkerMetricsURLs(t *testing.T) {
	var c queryCLI
	if _, _, err := Parse(&c, []string{"--worker-metrics-urls=http://w-0:8082/metrics,https://w-1/metrics,dns+http://workers:8082/metrics"},
		"query", "", ":0", io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := []string{"http://w-0:8082/metrics", "https://w-1/metrics", "dns+http://workers:8082/metrics"}; !slices.Equal(c.WorkerMetricsURLs, want) {
		t.Errorf("urls %q, want %q", c.WorkerMetricsURLs, want)
	}
	for _, bad := range []string{"w-0:8082/metrics", "ftp://w/metrics", "http:///metrics", "dns+w:8082"} {
		_, _, err := Parse(&queryCLI{}, []string{"--worker-metrics-urls=" + bad}, "query", "", ":0", io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--worker-metrics-urls") {
			t.Errorf("%q: err %v, want one naming --worker-metrics-urls", bad, err)
		}
	}
}
