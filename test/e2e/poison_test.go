package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestPoison: records no publisher could have sent through ingest land in
// the dead-letter topic with their reason, and the partition keeps moving.
func TestPoison(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), scenarioTimeout)
	defer cancel()
	s := newStack(t, stackOptions{workers: 1})

	// Everything goes to partition 0, in this order.
	w := &kafka.Writer{
		Addr:         kafka.TCP(s.brokers...),
		Topic:        s.topic,
		Balancer:     kafka.BalancerFunc(func(kafka.Message, ...int) int { return 0 }),
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		Transport:    s.kafka.Transport,
	}
	defer w.Close()
	// Ids unique to the run: Redis outlives the scenario's database, and a
	// "done" mark left by an earlier run would drop the events unstored.
	run := randomHex(4)
	valid := func(n int) kafka.Message {
		id := "after-" + run + "-" + strconv.Itoa(n)
		return kafka.Message{Key: []byte("poison/" + id), Value: fmt.Appendf(nil,
			`{"topic":"poison","event_id":%q,"timestamp":"2026-11-25T10:00:00Z","source":"e2e","payload":{"n":%d}}`, id, n)}
	}
	poison := []kafka.Message{
		{Key: []byte("poison/not-json"), Value: []byte("this is not JSON {")},
		// Well-formed JSON that breaks the event rules: empty id, bad time.
		{Key: []byte("poison/invalid"), Value: []byte(`{"topic":"poison","event_id":"","timestamp":"yesterday","source":"e2e"}`)},
		// A record carries one event object, never an array of them.
		{Key: []byte("poison/array"), Value: []byte(`[{"topic":"poison","event_id":"in-array","timestamp":"2026-11-25T10:00:00Z","source":"e2e"}]`)},
	}
	// Offsets 0..7: a valid record, the poison ones, four valid ones.
	first := append([]kafka.Message{valid(0)}, poison...)
	for n := 1; n <= 4; n++ {
		first = append(first, valid(n))
	}
	if err := w.WriteMessages(ctx, first...); err != nil {
		t.Fatalf("produce: %v", err)
	}
	// Later records of the same partition are not held up by the poison.
	time.Sleep(time.Second)
	var later []kafka.Message
	for n := 5; n <= 9; n++ {
		later = append(later, valid(n))
	}
	if err := w.WriteMessages(ctx, later...); err != nil {
		t.Fatalf("produce: %v", err)
	}

	c := s.checkExact(t, ctx, nil, int64(len(poison)))
	if c.records != 13 || c.received != 10 || c.unique != 10 || c.rows != 10 {
		t.Errorf("want 13 records, 10 received and stored once each; got %s", c)
	}
	var stored int
	if err := s.db.QueryRow(ctx, `SELECT count(*) FROM events WHERE topic = 'poison' AND event_id LIKE $1`, "after-"+run+"-%").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 10 {
		t.Errorf("%d of the 10 valid records stored", stored)
	}

	// The dead-letter topic holds each poison record once, as it was, with
	// the reason and where it came from.
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: s.brokers, Topic: s.dlq, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	for i, want := range poison {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			t.Fatalf("read dead-letter record %d: %v", i, err)
		}
		h := headers(m)
		t.Logf("dead-lettered %q: reason %q", m.Value, h["x-dlq-reason"])
		if string(m.Value) != string(want.Value) || string(m.Key) != string(want.Key) {
			t.Errorf("dead-letter record %d is %q/%q, want %q/%q", i, m.Key, m.Value, want.Key, want.Value)
		}
		if h["x-dlq-reason"] == "" {
			t.Errorf("dead-letter record %d has no reason", i)
		}
		if h["x-dlq-topic"] != s.topic || h["x-dlq-partition"] != "0" || h["x-dlq-offset"] != strconv.Itoa(i+1) {
			t.Errorf("dead-letter record %d says it came from %s/%s@%s, want %s/0@%d",
				i, h["x-dlq-topic"], h["x-dlq-partition"], h["x-dlq-offset"], s.topic, i+1)
		}
	}
	ends, err := s.logEndOffsets(ctx, s.dlq, 1)
	if err != nil {
		t.Fatal(err)
	}
	if ends[0] != int64(len(poison)) {
		t.Errorf("the dead-letter topic holds %d records, want %d", ends[0], len(poison))
	}
}

func headers(m kafka.Message) map[string]string {
	out := make(map[string]string, len(m.Headers))
	for _, h := range m.Headers {
		out[h.Key] = string(h.Value)
	}
	return out
}
