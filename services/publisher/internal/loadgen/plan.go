package loadgen

import (
	"math/rand/v2"
	"slices"
)

// Plan is the whole send order: Stream lists event numbers (0 … Distinct-1), a
// number appearing again being a re-send of the same event, cut into requests
// of Batch events (the last one may be shorter).
type Plan struct {
	Stream     []int32
	Batch      int
	Distinct   int
	Duplicates int

	// How the re-sends were placed, for the summary.
	InBatch int // a copy of an event already in the same request
	Soon    int // within the next few requests after the original
	Late    int // drained at the end from a shuffled re-send queue
}

// Batches is the number of requests in the plan.
func (p *Plan) Batches() int { return (len(p.Stream) + p.Batch - 1) / p.Batch }

// BatchAt returns the events of request i.
func (p *Plan) BatchAt(i int) []int32 {
	lo := i * p.Batch
	return p.Stream[lo:min(lo+p.Batch, len(p.Stream))]
}

// NewPlan places distinct originals in order and dups re-sends among them. Every
// re-send comes after the first copy of its event in the stream, so it is a
// re-send of something already sent (or being sent by a concurrent request).
func NewPlan(distinct, dups, batch int, rng *rand.Rand) *Plan {
	p := &Plan{Batch: batch, Distinct: distinct, Duplicates: dups}

	// A tenth of the re-sends share a request with their original; of the rest,
	// half follow soon and half arrive late and out of order.
	inBatch := 0
	if batch > 1 {
		// Capped so that enough non-first positions exist to hold them.
		inBatch = min(dups/10, distinct-1)
	}
	soon := (dups - inBatch) / 2
	late := dups - inBatch - soon

	// Soon re-sends: event i goes in before original target, target in (i, i+4*batch].
	type insert struct{ target, event int32 }
	ins := make([]insert, soon)
	for k := range ins {
		i := rng.IntN(distinct)
		t := min(i+1+rng.IntN(4*batch), distinct)
		ins[k] = insert{int32(t), int32(i)}
	}
	slices.SortStableFunc(ins, func(a, b insert) int { return int(a.target - b.target) })
	merged := make([]int32, 0, distinct+soon)
	k := 0
	for t := range int32(distinct) + 1 {
		for ; k < len(ins) && ins[k].target == t; k++ {
			merged = append(merged, ins[k].event)
		}
		if int(t) < distinct {
			merged = append(merged, t)
		}
	}

	// In-batch copies: choose exactly inBatch of the positions that are not the
	// first of a request (selection sampling) and put there a copy of an event
	// already placed earlier in the same request.
	seg := len(merged) + inBatch
	eligible := seg - (seg+batch-1)/batch
	p.Stream = make([]int32, 0, distinct+dups)
	left, m := inBatch, 0
	for pos := range seg {
		off := pos % batch
		if off != 0 && left > 0 && rng.IntN(eligible) < left {
			start := len(p.Stream) - off
			p.Stream = append(p.Stream, p.Stream[start+rng.IntN(off)])
			left--
		} else {
			p.Stream = append(p.Stream, merged[m])
			m++
		}
		if off != 0 {
			eligible--
		}
	}

	// Late re-sends: a queue of random earlier events, drained after the rest.
	for range late {
		p.Stream = append(p.Stream, int32(rng.IntN(distinct)))
	}
	p.InBatch, p.Soon, p.Late = inBatch, soon, late
	return p
}
