// Package event defines the event the system carries, how publish bodies are
// decoded into events and the rules an event must follow.
package event

import (
	"encoding/json"
	"strconv"
	"time"
)

// Event is one published event. Its identity is Key(): the same (topic,
// event_id) sent twice is the same event, whatever the payload says.
type Event struct {
	Topic     string          `json:"topic"`
	EventID   string          `json:"event_id"`
	Timestamp time.Time       `json:"timestamp"`
	Source    string          `json:"source"`
	Payload   json.RawMessage `json:"payload"`
}

// Key is the dedup key of an event, compared byte for byte.
type Key struct {
	Topic   string
	EventID string
}

// Key returns the dedup key of e.
func (e *Event) Key() Key { return Key{Topic: e.Topic, EventID: e.EventID} }

// String renders the key as "<len(topic)>:<topic>/<event_id>". The length
// prefix keeps it unambiguous when a topic contains '/', so two events can
// never share a claim key in Redis.
func (k Key) String() string {
	return strconv.Itoa(len(k.Topic)) + ":" + k.Topic + "/" + k.EventID
}
