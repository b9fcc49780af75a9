package telemetry

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// Metrics are the Prometheus metrics of one process. Labels are bounded:
// route patterns and status codes, never topics or event ids.
type Metrics struct {
	Registry *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	accepted     prometheus.Counter
	batches      prometheus.Counter
	batchSize    prometheus.Histogram
	unique       prometheus.Counter
	duplicates   prometheus.Counter
	claimErrors  prometheus.Counter

	storePersist  prometheus.Observer
	claimClaim    prometheus.Observer
	claimMarkDone prometheus.Observer
	redisDegraded prometheus.Gauge
	lag           *prometheus.GaugeVec
	deadLettered  prometheus.Counter
}

// NewMetrics registers the process's metrics in a fresh registry, with the Go
// runtime and process collectors.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{Registry: reg}
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aggregator_http_requests_total", Help: "HTTP requests by route, method and status code.",
	}, []string{"route", "method", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "aggregator_http_request_duration_seconds", Help: "HTTP request duration by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route", "method"})
	m.accepted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "aggregator_events_accepted_total", Help: "Events acknowledged to publishers (202).",
	})
	m.batches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "aggregator_batches_processed_total", Help: "Batches committed by the processing core.",
	})
	m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "aggregator_batch_size_events", Help: "Events per processed batch.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 9),
	})
	m.unique = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "aggregator_events_unique_total", Help: "Events stored for the first time.",
	})
	m.duplicates = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "aggregator_events_duplicate_total", Help: "Events dropped as duplicates.",
	})
	m.claimErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "aggregator_claim_errors_total", Help: "Batches whose claim failed and went through the store alone.",
	})
	// Store and claim calls take one batch each: from well under a
	// millisecond (a cached claim) to seconds (a stalled database).
	latency := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	storeDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "aggregator_store_duration_seconds", Help: "Duration of one store call (a batch transaction) by operation.",
		Buckets: latency,
	}, []string{"op"})
	claimDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "aggregator_claim_duration_seconds", Help: "Duration of one claimer call (a batch) by operation.",
		Buckets: latency,
	}, []string{"op"})
	m.storePersist = storeDuration.WithLabelValues("persist")
	m.claimClaim = claimDuration.WithLabelValues("claim")
	m.claimMarkDone = claimDuration.WithLabelValues("mark_done")
	m.redisDegraded = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "aggregator_redis_degraded", Help: "1 while Redis fails and the store alone decides what is new, else 0.",
	})
	m.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "aggregator_kafka_consumer_lag", Help: "Records of a partition not yet processed by this consumer.",
	}, []string{"partition"})
	m.deadLettered = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "aggregator_dlq_records_total", Help: "Kafka records sent to the dead-letter topic.",
	})
	for _, c := range []prometheus.Collector{m.httpRequests, m.httpDuration, m.accepted, m.batches,
		m.batchSize, m.unique, m.duplicates, m.claimErrors, storeDuration, claimDuration,
		m.redisDegraded, m.lag, m.deadLettered} {
		f(c)
	}
	return m
}

// Handler serves the exposition.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Accepted counts acknowledged events (an ingest.Observer).
func (m *Metrics) Accepted(_ context.Context, n int) { m.accepted.Add(float64(n)) }

// Processed counts a processed batch (a process.Observer). It leaves the
// Redis-degraded gauge alone: that has one writer, the claimer's hook, so
// batches of several partitions cannot flip it back and forth.
func (m *Metrics) Processed(_ context.Context, r process.Result, claimErr error) {
	m.batches.Inc()
	m.batchSize.Observe(float64(r.Received))
	m.unique.Add(float64(r.Unique))
	m.duplicates.Add(float64(r.Duplicates))
	if claimErr != nil {
		m.claimErrors.Inc()
	}
}

// ObserveStore records the duration of one store transaction (a
// process.StageObserver).
func (m *Metrics) ObserveStore(d time.Duration) {
	m.storePersist.Observe(d.Seconds())
}

// ObserveClaim records the duration of one claim call (a
// process.StageObserver).
func (m *Metrics) ObserveClaim(d time.Duration) {
	m.claimClaim.Observe(d.Seconds())
}

// ObserveMarkDone records the duration of one "done" marking call (a
// process.StageObserver).
func (m *Metrics) ObserveMarkDone(d time.Duration) {
	m.claimMarkDone.Observe(d.Seconds())
}

// SetRedisDegraded sets aggregator_redis_degraded to 1 (degraded) or 0. Its
// one caller is the Redis claimer's degraded hook.
func (m *Metrics) SetRedisDegraded(degraded bool) {
	v := 0.0
	if degraded {
		v = 1
	}
	m.redisDegraded.Set(v)
}

// SetLag sets the consumer lag of a partition.
func (m *Metrics) SetLag(partition int, lag int64) {
	m.lag.WithLabelValues(strconv.Itoa(partition)).Set(float64(lag))
}

// DeleteLag forgets a partition's lag once it moved to another consumer,
// so the sum over consumers counts each partition once.
func (m *Metrics) DeleteLag(partition int) {
	m.lag.DeleteLabelValues(strconv.Itoa(partition))
}

// Lag, Revoked and DeadLettered make Metrics the Kafka consumer's observer.
// The worker reads one topic: the partition alone labels the lag.

// Lag sets a partition's consumer lag.
func (m *Metrics) Lag(_ string, partition int, lag int64) { m.SetLag(partition, lag) }

// Revoked forgets a partition's lag.
func (m *Metrics) Revoked(_ string, partition int) { m.DeleteLag(partition) }

// DeadLettered counts records sent to the dead-letter topic.
func (m *Metrics) DeadLettered(_ string, _ int, n int) { m.deadLettered.Add(float64(n)) }

// Middleware records each request under the route pattern the mux matched.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		route, method := r.Pattern, r.Method // Pattern is set by http.ServeMux while routing
		if route == "" {
			route = "unmatched"
		}
		if !knownMethods[method] {
			method = "OTHER" // a client picks the method: keep the series bounded
		}
		m.httpRequests.WithLabelValues(route, method, strconv.Itoa(sw.code)).Inc()
		m.httpDuration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	})
}

var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
