package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// families is one parsed /metrics exposition.
type families map[string]*dto.MetricFamily

// scrape reads and parses a process's /metrics.
func scrape(t *testing.T, ctx context.Context, p *process) families {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: GET /metrics: %v", p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: GET /metrics: %s", p.name, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s: parse /metrics: %v", p.name, err)
	}
	return fams
}

// matching returns the samples of a family whose labels include labels.
func (f families) matching(name string, labels map[string]string) []*dto.Metric {
	fam := f[name]
	if fam == nil {
		return nil
	}
	var out []*dto.Metric
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range labels {
			ok = ok && have[k] == v
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

// sum adds the values of the matching counter or gauge samples.
func (f families) sum(name string, labels map[string]string) float64 {
	var v float64
	for _, m := range f.matching(name, labels) {
		v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return v
}

// histogram adds the counts and sums of the matching histogram samples.
func (f families) histogram(name string, labels map[string]string) (count uint64, sum float64) {
	for _, m := range f.matching(name, labels) {
		count += m.GetHistogram().GetSampleCount()
		sum += m.GetHistogram().GetSampleSum()
	}
	return count, sum
}

// checkTypes fails for each family missing or of another type.
func (f families) checkTypes(t *testing.T, proc string, want map[string]dto.MetricType) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(want)) {
		fam := f[name]
		if fam == nil {
			t.Errorf("%s: no %s in /metrics", proc, name)
		} else if fam.GetType() != want[name] {
			t.Errorf("%s: %s is a %v, want a %v", proc, name, fam.GetType(), want[name])
		}
	}
	// Bounded cardinality: no label takes a topic or an event id.
	for name, fam := range f {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "topic" || l.GetName() == "event_id" {
					t.Errorf("%s: %s has a %s label", proc, name, l.GetName())
				}
			}
		}
	}
}

// TestMetrics scrapes the /metrics of every binary of a stack (1 ingest, 2
// workers, query) after a publisher run, and checks the families each
// exposes and that their counts match what was published and stored.
func TestMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 2})
	// A settled group: each partition's lag is then reported by its one owner.
	s.waitMembers(t, ctx, 2)
	rep := s.mustPublish(t, ctx, "--events", "5000", "--duplicates", "0.2", "--topics", "4",
		"--batch", "250", "--concurrency", "4", "--settle-timeout", "60s")
	c := s.checkExact(t, ctx, rep, 0)
	counter, gauge, histogram := dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_HISTOGRAM
	runtime := map[string]dto.MetricType{"go_goroutines": gauge, "process_cpu_seconds_total": counter}

	// Ingest: every publisher attempt that got an answer, by status code,
	// and every event acknowledged.
	in := scrape(t, ctx, s.ingest)
	in.checkTypes(t, "ingest", merged(runtime, map[string]dto.MetricType{
		"aggregator_http_requests_total":           counter,
		"aggregator_http_request_duration_seconds": histogram,
		"aggregator_events_accepted_total":         counter,
	}))
	publish := map[string]string{"route": "POST /publish", "method": "POST"}
	var answered float64
	for code, n := range rep.Responses {
		if _, err := strconv.Atoi(code); err != nil {
			continue // "timeout" or "error": no status code to count
		}
		answered += float64(n)
		if got := in.sum("aggregator_http_requests_total", with(publish, "code", code)); got != float64(n) {
			t.Errorf("ingest: %v POST /publish requests answered %s, the publisher got %d", got, code, n)
		}
	}
	if got := in.sum("aggregator_http_requests_total", publish); got != answered {
		t.Errorf("ingest: %v POST /publish requests counted, the publisher got %v answers", got, answered)
	}
	if n, _ := in.histogram("aggregator_http_request_duration_seconds", publish); float64(n) != answered {
		t.Errorf("ingest: %d POST /publish durations observed, %v requests answered", n, answered)
	}
	accepted := in.sum("aggregator_events_accepted_total", nil)
	if accepted < float64(rep.EventsAcknowledged) || accepted > float64(c.records) {
		t.Errorf("ingest: %v events accepted, want between the %d the publisher saw acknowledged and the %d records in the topic",
			accepted, rep.EventsAcknowledged, c.records)
	}
	if rep.Retries == 0 && accepted != float64(c.received) {
		t.Errorf("ingest: %v events accepted without a retry, %d received", accepted, c.received)
	}

	// Workers: together they count what /stats says, each partition's lag
	// is reported by one of them and ends at 0.
	ends, err := s.logEndOffsets(ctx, s.topic, partitions)
	if err != nil {
		t.Fatalf("log end offsets: %v", err)
	}
	var unique, duplicates, batches, batchEvents float64
	var batchCount uint64
	lagOwner := map[string]string{}
	for _, w := range s.workers {
		var wm families
		// The lag is set once a batch is handled, just after its commit.
		wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
		waitFor(wctx, 200*time.Millisecond, func() bool {
			wm = scrape(t, ctx, w)
			for _, m := range wm.matching("aggregator_kafka_consumer_lag", nil) {
				if m.GetGauge().GetValue() != 0 {
					return false
				}
			}
			return true
		})
		wcancel()
		wm.checkTypes(t, w.name, merged(runtime, map[string]dto.MetricType{
			"aggregator_batches_processed_total": counter,
			"aggregator_batch_size_events":       histogram,
			"aggregator_events_unique_total":     counter,
			"aggregator_events_duplicate_total":  counter,
			"aggregator_kafka_consumer_lag":      gauge,
			"aggregator_store_duration_seconds":  histogram,
			"aggregator_claim_duration_seconds":  histogram,
			"aggregator_redis_degraded":          gauge,
		}))
		b := wm.sum("aggregator_batches_processed_total", nil)
		if b == 0 {
			t.Errorf("%s processed no batch", w.name)
		}
		n, sum := wm.histogram("aggregator_batch_size_events", nil)
		if float64(n) != b {
			t.Errorf("%s: %d batch sizes observed for %v batches", w.name, n, b)
		}
		if stores, _ := wm.histogram("aggregator_store_duration_seconds", map[string]string{"op": "persist"}); float64(stores) < b {
			t.Errorf("%s: %d store calls timed for %v batches", w.name, stores, b)
		}
		if claims, _ := wm.histogram("aggregator_claim_duration_seconds", map[string]string{"op": "claim"}); claims == 0 {
			t.Errorf("%s: no claim call timed", w.name)
		}
		if d := wm.sum("aggregator_redis_degraded", nil); d != 0 {
			t.Errorf("%s: aggregator_redis_degraded %v with Redis up", w.name, d)
		}
		for _, m := range wm.matching("aggregator_kafka_consumer_lag", nil) {
			p := labelValue(m, "partition")
			if other, dup := lagOwner[p]; dup {
				t.Errorf("partition %s: lag reported by %s and %s", p, other, w.name)
			}
			lagOwner[p] = w.name
			if v := m.GetGauge().GetValue(); v != 0 {
				t.Errorf("%s: partition %s lag %v after the drain, want 0", w.name, p, v)
			}
		}
		unique += wm.sum("aggregator_events_unique_total", nil)
		duplicates += wm.sum("aggregator_events_duplicate_total", nil)
		batches += b
		batchCount += n
		batchEvents += sum
	}
	t.Logf("workers: %v batches (%v events), %v unique + %v duplicates; lag reported for partitions %v",
		batches, batchEvents, unique, duplicates, slices.Sorted(maps.Keys(lagOwner)))
	if unique != float64(c.unique) || duplicates != float64(c.duplicates) || unique+duplicates != float64(c.received) {
		t.Errorf("workers count %v unique + %v duplicates; /stats says %d + %d = %d received",
			unique, duplicates, c.unique, c.duplicates, c.received)
	}
	if batchEvents != float64(c.received) {
		t.Errorf("batch sizes add up to %v events, %d received", batchEvents, c.received)
	}
	for p, end := range ends {
		if _, ok := lagOwner[strconv.Itoa(p)]; end > 0 && !ok {
			t.Errorf("partition %d holds %d records but no worker reports its lag", p, end)
		}
	}

	// Query: one more GET /stats is one more request counted.
	q := scrape(t, ctx, s.query)
	q.checkTypes(t, "query", merged(runtime, map[string]dto.MetricType{
		"aggregator_http_requests_total":           counter,
		"aggregator_http_request_duration_seconds": histogram,
	}))
	statsOK := map[string]string{"route": "GET /stats", "method": "GET", "code": "200"}
	before := q.sum("aggregator_http_requests_total", statsOK)
	if before == 0 {
		t.Errorf("query: no GET /stats counted after the publisher's and the checks' reads")
	}
	if _, err := s.stats(ctx); err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	if after := scrape(t, ctx, s.query).sum("aggregator_http_requests_total", statsOK); after != before+1 {
		t.Errorf("query: GET /stats counted %v, then %v after one more request", before, after)
	}

	for _, p := range []*process{s.ingest, s.query, s.workers[0]} {
		if g := scrape(t, ctx, p).sum("go_goroutines", nil); g <= 0 {
			t.Errorf("%s: go_goroutines %v", p.name, g)
		}
	}
}

func merged(a, b map[string]dto.MetricType) map[string]dto.MetricType {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

func with(labels map[string]string, k, v string) map[string]string {
	out := maps.Clone(labels)
	out[k] = v
	return out
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return fmt.Sprintf("(no %s label)", name)
}
