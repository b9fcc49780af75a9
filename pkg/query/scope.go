package query

import (
	"context"

	"github.com/event-aggregator/event-aggregator/pkg/auth"
	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// maxScan bounds the rows one GET /events reads for a key limited to some
// topics: past it the page is short (even empty) and its cursor points after
// the rows read, so the next request goes on from there.
const maxScan = 10 * (maxLimit + 1)

// page returns up to limit events after `after` that g may read, and where
// the next page starts when there may be one.
func (h *Handlers) page(ctx context.Context, g *auth.Grant, topic string, after event.Position, limit int) ([]event.Stored, *event.Position, error) {
	if topic != "" || g.EveryTopic() {
		// One more than asked tells whether another page exists.
		rows, err := h.r.Events(ctx, topic, after, limit+1)
		if err != nil || len(rows) <= limit {
			return rows, nil, err
		}
		rows = rows[:limit]
		return rows, &rows[limit-1].Pos, nil
	}
	// Every topic the key may read: read in processing order and keep what
	// it may see. A filter in the store would not be simpler: a topic that
	// appears while paging must still be served in its place.
	var out []event.Stored
	for scanned := 0; ; {
		rows, err := h.r.Events(ctx, "", after, maxLimit+1)
		if err != nil {
			return nil, nil, err
		}
		for _, e := range rows {
			if !g.Topic(e.Topic) {
				after = e.Pos
				continue
			}
			if len(out) == limit {
				return out, &out[limit-1].Pos, nil
			}
			out = append(out, e)
			after = e.Pos
		}
		scanned += len(rows)
		if len(rows) <= maxLimit {
			return out, nil, nil
		}
		if scanned >= maxScan {
			return out, &after, nil
		}
	}
}

// readable keeps the counters of the topics g may read.
func readable(g *auth.Grant, counts []event.Counts) []event.Counts {
	if g.EveryTopic() {
		return counts
	}
	out := make([]event.Counts, 0, len(counts))
	for _, c := range counts {
		if g.Topic(c.Topic) {
			out = append(out, c)
		}
	}
	return out
}
