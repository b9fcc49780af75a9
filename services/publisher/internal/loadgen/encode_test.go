package loadgen

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

type decoded struct {
	Topic     string `json:"topic"`
	EventID   string `json:"event_id"`
	Timestamp string `json:"timestamp"`
	Source    string `json:"source"`
	Payload   struct {
		Seq  int    `json:"seq"`
		Data string `json:"data"`
	} `json:"payload"`
}

func TestEncoder(t *testing.T) {
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	cfg := Config{Topics: 3, Batch: 4, RunID: `r"1`, PayloadBytes: 200}
	e := newEncoder(&cfg, base)

	body := e.AppendBody(nil, []int32{0, 4, 4, 2})
	var events []decoded
	if err := json.Unmarshal(body, &events); err != nil {
		t.Fatalf("array body: %v\n%s", err, body)
	}
	if len(events) != 4 || events[1] != events[2] {
		t.Fatalf("copies differ: %+v", events)
	}
	ev := events[1]
	if ev.Topic != "topic-1" || ev.EventID != `r"1-4` || ev.Source != "publisher" || ev.Payload.Seq != 4 {
		t.Errorf("event 4 = %+v", ev)
	}
	ts, err := time.Parse(time.RFC3339Nano, ev.Timestamp)
	if err != nil || !ts.Equal(base.Add(4*time.Microsecond)) || !strings.HasSuffix(ev.Timestamp, "Z") {
		t.Errorf("timestamp %q (%v)", ev.Timestamp, err)
	}
	if size := len(`{"seq":4,"data":""}`) + len(ev.Payload.Data); size < 180 || size > 220 {
		t.Errorf("payload of %d bytes, want about 200", size)
	}

	cfg.Batch, cfg.PayloadBytes = 1, 0
	single := newEncoder(&cfg, base).AppendBody(nil, []int32{5})
	var obj decoded
	if err := json.Unmarshal(single, &obj); err != nil || obj.EventID != `r"1-5` {
		t.Errorf("single-object body %s: %v", single, err)
	}

	cfg.NDJSON = true
	nd := newEncoder(&cfg, base)
	lines := strings.Split(strings.TrimSuffix(string(nd.AppendBody(nil, []int32{1, 2})), "\n"), "\n")
	if nd.ContentType() != "application/x-ndjson" || len(lines) != 2 {
		t.Fatalf("ndjson: %q, %d lines", nd.ContentType(), len(lines))
	}
	for _, l := range lines {
		if err := json.Unmarshal([]byte(l), &obj); err != nil {
			t.Errorf("ndjson line %q: %v", l, err)
		}
	}
}
