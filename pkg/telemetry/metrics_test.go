package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/event-aggregator/event-aggregator/pkg/process"
	"github.com/event-aggregator/event-aggregator/pkg/telemetry"
)

// testMux routes like a binary's: a publish route, a probe and /metrics.
func testMux(m *telemetry.Metrics) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("POST /publish", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	mux.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	mux.Handle("GET /metrics", m.Handler())
	return mux
}

// scrape reads /metrics over HTTP and parses the text exposition.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the exposition: %v", err)
	}
	return fams
}

// sample finds the metric of a family with exactly these labels.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("family %s missing", name)
	}
	var seen []string
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		seen = append(seen, labelString(got))
		if labelString(got) == labelString(labels) {
			return m
		}
	}
	t.Fatalf("%s has no series %s; it has %v", name, labelString(labels), seen)
	return nil
}

func labelString(l map[string]string) string {
	var parts []string
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := sample(t, fams, name, labels)
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s is neither a counter nor a gauge", name)
	return 0
}

func TestMetricsExposition(t *testing.T) {
	m := telemetry.NewMetrics()
	srv := httptest.NewServer(telemetry.HTTPMiddleware(m, nil, nil)(testMux(m)))
	defer srv.Close()

	for range 2 {
		resp, err := http.Post(srv.URL+"/publish", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for _, path := range []string{"/healthz", "/nope"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	ctx := context.Background()
	m.Accepted(ctx, 5)
	m.Processed(ctx, process.Result{Received: 10, Unique: 7, Duplicates: 3}, nil)
	m.Processed(ctx, process.Result{Received: 4, Unique: 4}, errors.New("redis down"))
	m.ObserveStore(3 * time.Millisecond)
	m.ObserveStore(2 * time.Second)
	m.ObserveClaim(200 * time.Microsecond)
	m.ObserveMarkDone(time.Millisecond)
	m.SetLag(0, 42)
	m.SetLag(1, 7)
	m.Lag("events", 2, 5)
	m.Revoked("events", 1)
	m.DeadLettered("events", 0, 2)

	fams := scrape(t, srv.URL)
	// The type of every family of ours.
	types := map[string]dto.MetricType{
		"aggregator_http_requests_total":           dto.MetricType_COUNTER,
		"aggregator_http_request_duration_seconds": dto.MetricType_HISTOGRAM,
		"aggregator_events_accepted_total":         dto.MetricType_COUNTER,
		"aggregator_batches_processed_total":       dto.MetricType_COUNTER,
		"aggregator_batch_size_events":             dto.MetricType_HISTOGRAM,
		"aggregator_events_unique_total":           dto.MetricType_COUNTER,
		"aggregator_events_duplicate_total":        dto.MetricType_COUNTER,
		"aggregator_claim_errors_total":            dto.MetricType_COUNTER,
		"aggregator_store_duration_seconds":        dto.MetricType_HISTOGRAM,
		"aggregator_claim_duration_seconds":        dto.MetricType_HISTOGRAM,
		"aggregator_redis_degraded":                dto.MetricType_GAUGE,
		"aggregator_kafka_consumer_lag":            dto.MetricType_GAUGE,
		"aggregator_dlq_records_total":             dto.MetricType_COUNTER,
		"go_goroutines":                            dto.MetricType_GAUGE,
		"process_cpu_seconds_total":                dto.MetricType_COUNTER,
	}
	for name, typ := range types {
		f, ok := fams[name]
		if !ok {
			t.Errorf("family %s missing", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is a %v, want a %v", name, f.GetType(), typ)
		}
	}

	// HTTP: route patterns, never raw paths; the scrape itself is counted
	// only after it was served.
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"route": "POST /publish", "method": "POST", "code": "202"}, 2},
		{map[string]string{"route": "GET /healthz", "method": "GET", "code": "200"}, 1},
		{map[string]string{"route": "unmatched", "method": "GET", "code": "404"}, 1},
	} {
		if got := value(t, fams, "aggregator_http_requests_total", c.labels); got != c.want {
			t.Errorf("requests %v = %v, want %v", c.labels, got, c.want)
		}
	}
	if n := len(fams["aggregator_http_requests_total"].GetMetric()); n != 3 {
		t.Errorf("%d request series, want 3", n)
	}
	h := sample(t, fams, "aggregator_http_request_duration_seconds", map[string]string{"route": "POST /publish", "method": "POST"})
	if h.GetHistogram().GetSampleCount() != 2 {
		t.Errorf("publish duration count %d, want 2", h.GetHistogram().GetSampleCount())
	}

	none := map[string]string{}
	for name, want := range map[string]float64{
		"aggregator_events_accepted_total":   5,
		"aggregator_batches_processed_total": 2,
		"aggregator_events_unique_total":     11,
		"aggregator_events_duplicate_total":  3,
		"aggregator_claim_errors_total":      1,
		"aggregator_redis_degraded":          0, // a failed claim is counted; the claimer's hook sets the gauge
		"aggregator_dlq_records_total":       2,
	} {
		if got := value(t, fams, name, none); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	bs := sample(t, fams, "aggregator_batch_size_events", none).GetHistogram()
	if bs.GetSampleCount() != 2 || bs.GetSampleSum() != 14 {
		t.Errorf("batch sizes: count %d sum %v, want 2 and 14", bs.GetSampleCount(), bs.GetSampleSum())
	}

	st := sample(t, fams, "aggregator_store_duration_seconds", map[string]string{"op": "persist"}).GetHistogram()
	if st.GetSampleCount() != 2 || st.GetSampleSum() < 2.003-1e-9 || st.GetSampleSum() > 2.003+1e-9 {
		t.Errorf("store durations: count %d sum %v", st.GetSampleCount(), st.GetSampleSum())
	}
	if got := cumulative(st, 0.005); got != 1 {
		t.Errorf("store durations <= 5 ms: %d, want 1", got)
	}
	for _, op := range []string{"claim", "mark_done"} {
		c := sample(t, fams, "aggregator_claim_duration_seconds", map[string]string{"op": op}).GetHistogram()
		if c.GetSampleCount() != 1 {
			t.Errorf("claim %s count %d, want 1", op, c.GetSampleCount())
		}
	}

	// Lag: one series per partition this consumer owns; revoked ones are gone.
	if got := value(t, fams, "aggregator_kafka_consumer_lag", map[string]string{"partition": "0"}); got != 42 {
		t.Errorf("lag of partition 0 = %v", got)
	}
	if got := value(t, fams, "aggregator_kafka_consumer_lag", map[string]string{"partition": "2"}); got != 5 {
		t.Errorf("lag of partition 2 = %v", got)
	}
	if n := len(fams["aggregator_kafka_consumer_lag"].GetMetric()); n != 2 {
		t.Errorf("%d lag series, want 2 (partition 1 was revoked)", n)
	}

	// The gauge has one writer: batches, good or bad, leave it alone.
	m.SetRedisDegraded(true)
	m.Processed(ctx, process.Result{Received: 1, Unique: 1}, nil)
	if got := value(t, scrape(t, srv.URL), "aggregator_redis_degraded", none); got != 1 {
		t.Errorf("redis degraded = %v after a good batch overrode the hook, want 1", got)
	}
	m.SetRedisDegraded(false)
	if got := value(t, scrape(t, srv.URL), "aggregator_redis_degraded", none); got != 0 {
		t.Errorf("redis degraded = %v after the hook cleared it, want 0", got)
	}
}

// cumulative is the histogram's count at the bucket bound le.
func cumulative(h *dto.Histogram, le float64) uint64 {
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == le {
			return b.GetCumulativeCount()
		}
	}
	return 0
}

// The processing core tells Metrics how long its stages took.
var _ process.StageObserver = (*telemetry.Metrics)(nil)

// TestMethodLabelBounded: a client-chosen method never makes a new series.
func TestMethodLabelBounded(t *testing.T) {
	m := telemetry.NewMetrics()
	h := m.Middleware(http.NotFoundHandler())
	for i := range 50 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(fmt.Sprintf("M%d", i), "/x", nil))
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "aggregator_http_requests_total" {
			continue
		}
		if n := len(f.GetMetric()); n != 1 {
			t.Fatalf("%d series for 50 invented methods, want 1", n)
		}
		for _, l := range f.GetMetric()[0].GetLabel() {
			if l.GetName() == "method" && l.GetValue() != "OTHER" {
				t.Fatalf("method label %q, want OTHER", l.GetValue())
			}
		}
		return
	}
	t.Fatal("no aggregator_http_requests_total family")
}
