package event

import (
	"cmp"
	"time"
)

// Position is where a stored event stands in processing order, compared as
// (Tx, Seq). Seq is taken at insert time, but concurrent writers commit in
// any order; Tx is the writing transaction, so a reader that only serves
// finished transactions never passes a row that commits later. A store with
// a single writer, whose Seq order is already the commit order, leaves Tx 0.
type Position struct {
	Tx, Seq int64
}

// Compare returns -1, 0 or +1 as p is before, at or after q.
func (p Position) Compare(q Position) int {
	return cmp.Or(cmp.Compare(p.Tx, q.Tx), cmp.Compare(p.Seq, q.Seq))
}

// Stored is an event as the store keeps it. Pos orders events by processing.
type Stored struct {
	Event
	Pos         Position
	ProcessedAt time.Time
}

// Counts are the counters of one topic. Received == Unique + Duplicates.
type Counts struct {
	Topic      string `json:"topic"`
	Received   int64  `json:"received"`
	Unique     int64  `json:"unique_processed"`
	Duplicates int64  `json:"duplicate_dropped"`
}
