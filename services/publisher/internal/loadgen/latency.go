package loadgen

import (
	"math"
	"slices"
	"time"
)

// Latency summarises request round trips in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// Summarize computes exact nearest-rank percentiles; it sorts d in place.
func Summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return Latency{
		Count: len(d),
		Min:   ms(d[0]),
		Mean:  ms(sum / time.Duration(len(d))),
		P50:   ms(Percentile(d, 50)),
		P95:   ms(Percentile(d, 95)),
		P99:   ms(Percentile(d, 99)),
		Max:   ms(d[len(d)-1]),
	}
}

// Percentile returns the nearest-rank p-th percentile of sorted: the smallest
// value with at least p% of the values at or below it.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
