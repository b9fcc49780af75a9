package loadgen

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestDuplicateCount(t *testing.T) {
	for _, tc := range []struct {
		distinct int
		ratio    float64
		want     int
	}{
		{10000, 0.2, 2500},
		{10000, 0, 0},
		{3, 0.5, 3},
		{1, 0.9, 9},
		{7, 0.2, 2}, // 1.75 rounds to 2
	} {
		if got := DuplicateCount(tc.distinct, tc.ratio); got != tc.want {
			t.Errorf("DuplicateCount(%d, %v) = %d, want %d", tc.distinct, tc.ratio, got, tc.want)
		}
	}
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name            string
		distinct, batch int
		ratio           float64
	}{
		{"default shape", 10000, 100, 0.2},
		{"single-event requests", 500, 1, 0.2},
		{"no duplicates", 1000, 64, 0},
		{"mostly duplicates", 50, 8, 0.9},
		{"one event", 1, 10, 0.5},
		{"batch larger than all", 30, 1000, 0.3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dups := DuplicateCount(tc.distinct, tc.ratio)
			p := NewPlan(tc.distinct, dups, tc.batch, rand.New(rand.NewPCG(1, 2)))

			if len(p.Stream) != tc.distinct+dups {
				t.Fatalf("stream has %d events, want %d + %d", len(p.Stream), tc.distinct, dups)
			}
			if p.InBatch+p.Soon+p.Late != dups {
				t.Errorf("placement %d + %d + %d, want %d", p.InBatch, p.Soon, p.Late, dups)
			}
			if tc.batch == 1 && p.InBatch != 0 {
				t.Errorf("%d in-batch copies with single-event requests", p.InBatch)
			}
			first := make([]int, tc.distinct)
			for i := range first {
				first[i] = -1
			}
			resends := 0
			for pos, n := range p.Stream {
				if n < 0 || int(n) >= tc.distinct {
					t.Fatalf("event %d at %d out of range", n, pos)
				}
				if first[n] < 0 {
					first[n] = pos
					// Originals go out in order.
					if n > 0 && first[n-1] < 0 {
						t.Fatalf("event %d before event %d", n, n-1)
					}
				} else {
					resends++
				}
			}
			if slices.Contains(first, -1) {
				t.Fatal("some event never sent")
			}
			if resends != dups {
				t.Errorf("%d re-sends, want %d", resends, dups)
			}

			batches := p.Batches()
			total, inRequest := 0, 0
			for i := range batches {
				b := p.BatchAt(i)
				if len(b) == 0 || len(b) > tc.batch || (i < batches-1 && len(b) != tc.batch) {
					t.Fatalf("request %d has %d events, batch %d", i, len(b), tc.batch)
				}
				total += len(b)
				inRequest += len(b) - len(slices.Compact(slices.Sorted(slices.Values(b))))
			}
			if total != len(p.Stream) {
				t.Errorf("requests cover %d events, want %d", total, len(p.Stream))
			}
			if inRequest < p.InBatch {
				t.Errorf("%d repeats inside requests, want at least %d", inRequest, p.InBatch)
			}
			if tc.name == "default shape" {
				if p.InBatch == 0 || p.Soon == 0 || p.Late == 0 {
					t.Errorf("placement %d/%d/%d: want every kind", p.InBatch, p.Soon, p.Late)
				}
				// The late queue is drained out of order.
				if tail := p.Stream[len(p.Stream)-p.Late:]; slices.IsSorted(tail) {
					t.Error("late re-sends are in order")
				}
			}
		})
	}
}

func TestPlanIsReproducible(t *testing.T) {
	a := NewPlan(1000, 250, 10, rand.New(rand.NewPCG(5, 6)))
	b := NewPlan(1000, 250, 10, rand.New(rand.NewPCG(5, 6)))
	if !slices.Equal(a.Stream, b.Stream) {
		t.Error("same seed, different plans")
	}
}
