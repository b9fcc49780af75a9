package kafka

import (
	"testing"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/ingest/ingesttest"
)

// TestContract runs the publisher contract on the real broker: what Publish
// acknowledged is in the topic, read back record by record.
func TestContract(t *testing.T) {
	c := realCluster(t)
	ingesttest.Run(t, func(t *testing.T) ingesttest.Subject {
		topic := c.topic(t, 3)
		p := newProducer(t, c, topic)
		return ingesttest.Subject{
			Publisher: p,
			Delivered: func(t *testing.T) []event.Event {
				var out []event.Event
				recs := readAll(t, c, topic)
				for _, part := range sortedKeys(recs) {
					for _, m := range recs[part] {
						e, err := Decode(m.Value)
						if err != nil {
							t.Fatalf("record %d/%d does not decode: %v", part, m.Offset, err)
						}
						out = append(out, e)
					}
				}
				return out
			},
			Close: p.Close,
		}
	})
}
