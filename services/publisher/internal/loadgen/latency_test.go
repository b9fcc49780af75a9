package loadgen

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[i] = time.Duration(i+1) * time.Millisecond
	}
	rand.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
	got := Summarize(d)
	want := Latency{Count: 100, Min: 1, Mean: 50.5, P50: 50, P95: 95, P99: 99, Max: 100}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
}

func TestPercentile(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{[]time.Duration{7 * ms}, 99, 7 * ms},
		{[]time.Duration{1 * ms, 2 * ms}, 50, 1 * ms},
		{[]time.Duration{1 * ms, 2 * ms}, 51, 2 * ms},
		{[]time.Duration{1 * ms, 2 * ms, 3 * ms}, 0, 1 * ms},
		{[]time.Duration{1 * ms, 2 * ms, 3 * ms}, 100, 3 * ms},
	} {
		if got := Percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", tc.sorted, tc.p, got, tc.want)
		}
	}
}
