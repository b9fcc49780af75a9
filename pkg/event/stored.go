package event

import "time"

// Stored is an event as the store keeps it. Seq orders events by processing.
type Stored struct {
	Event
	Seq         int64
	ProcessedAt time.Time
}

// Counts are the counters of one topic. Received == Unique + Duplicates.
type Counts struct {
	Topic      string `json:"topic"`
	Received   int64  `json:"received"`
	Unique     int64  `json:"unique_processed"`
	Duplicates int64  `json:"duplicate_dropped"`
}
