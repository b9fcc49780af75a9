package loadgen

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// encoder writes events by hand: the generator must outrun the aggregator it
// loads, and every copy of event n must be byte-identical.
type encoder struct {
	topics  []string // `{"topic":"topic-i","event_id":"` per topic
	id      idWriter
	source  string // from the end of the timestamp to the payload's seq value
	filler  string // payload padding
	base    time.Time
	ndjson  bool
	single  bool // batch of one sent as a bare object
	nTopics int32
}

func newEncoder(cfg *Config, base time.Time) *encoder {
	runID := jsonString(cfg.RunID)
	e := &encoder{
		topics:  make([]string, cfg.Topics),
		base:    base.UTC(),
		ndjson:  cfg.NDJSON,
		single:  cfg.Batch == 1 && !cfg.NDJSON,
		nTopics: int32(cfg.Topics),
	}
	for i := range e.topics {
		e.topics[i] = `{"topic":"` + TopicName(i) + `","event_id":"`
	}
	e.id.prefix = runID + "-"
	if cfg.IDs == IDsUUID {
		g := newUUIDGen(cfg.Seed, cfg.RunID)
		e.id.uuid = &g
	}
	source := cfg.Source
	if source == "" {
		source = "publisher"
	}
	e.source = `","source":"` + jsonString(source) + `","payload":{"seq":`
	// `{"seq":N,"data":""}` is about 24 bytes; pad the rest.
	if pad := cfg.PayloadBytes - 24; pad > 0 {
		e.filler = strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", pad/36+1)[:pad]
	}
	return e
}

// TopicName is the topic of the i-th topic slot.
func TopicName(i int) string { return "topic-" + strconv.Itoa(i) }

// EventID is the id of event n of a run.
func EventID(runID string, n int) string { return runID + "-" + strconv.Itoa(n) }

// jsonString escapes s for use between JSON quotes.
func jsonString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b[1 : len(b)-1])
}

// ContentType is the request's media type.
func (e *encoder) ContentType() string {
	if e.ndjson {
		return "application/x-ndjson"
	}
	return "application/json"
}

// AppendBody appends the request body for events to b.
func (e *encoder) AppendBody(b []byte, events []int32) []byte {
	switch {
	case e.ndjson:
		for _, n := range events {
			b = e.appendEvent(b, n)
			b = append(b, '\n')
		}
	case e.single && len(events) == 1:
		b = e.appendEvent(b, events[0])
	default:
		b = append(b, '[')
		for i, n := range events {
			if i > 0 {
				b = append(b, ',')
			}
			b = e.appendEvent(b, n)
		}
		b = append(b, ']')
	}
	return b
}

func (e *encoder) appendEvent(b []byte, n int32) []byte {
	b = append(b, e.topics[n%e.nTopics]...)
	b = e.id.append(b, n)
	b = append(b, `","timestamp":"`...)
	// Event n happened n microseconds after the run's start: stable across copies.
	b = e.base.Add(time.Duration(n)*time.Microsecond).AppendFormat(b, time.RFC3339Nano)
	b = append(b, e.source...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `,"data":"`...)
	b = append(b, e.filler...)
	return append(b, `"}}`...)
}
