package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/event-aggregator/event-aggregator/pkg/store/storetest"
)

// benchPublish posts 1,000-event JSON arrays from 8 clients over loopback
// HTTP and reports events/s. Each client gets its own event writer from
// newClient; event(i, body) writes the body's event i.
func benchPublish(b *testing.B, c *client, newClient func() func(i int, body *bytes.Buffer)) {
	b.SetParallelism(4) // 4 × GOMAXPROCS(2) = 8 clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		event := newClient()
		var body bytes.Buffer
		for pb.Next() {
			body.Reset()
			body.WriteByte('[')
			for i := range 1000 {
				if i > 0 {
					body.WriteByte(',')
				}
				event(i, &body)
			}
			body.WriteByte(']')
			code, out, err := c.post("application/json", body.Bytes())
			if err != nil || code != http.StatusAccepted {
				b.Errorf("publish: %d %s %v", code, out, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPublishBatched drives the whole all-in-one path over loopback
// HTTP: 1,000-event bodies with 20% duplicates from 8 clients.
func BenchmarkPublishBatched(b *testing.B) {
	c, _ := startInProcess(&testing.T{}, b.TempDir())
	var seq atomic.Int64
	benchPublish(b, c, func() func(int, *bytes.Buffer) {
		var base int64
		return func(i int, body *bytes.Buffer) {
			if i == 0 {
				base = seq.Add(800) - 800
			}
			n := base + int64(i%800) // the last 200 repeat: 20% duplicates
			fmt.Fprintf(body, `{"topic":"topic-%d","event_id":"e-%d","timestamp":"2026-11-25T10:00:00Z","source":"bench","payload":{"n":%d}}`, n%10, n, n)
		}
	})
}

// BenchmarkPublishUUID is BenchmarkPublishBatched with random UUIDv4 ids, as
// real publishers send them, on each store engine: 200 of each 1,000 events
// repeat ids of the client's previous body.
func BenchmarkPublishUUID(b *testing.B) {
	for _, engine := range []string{"sqlite", "pebble"} {
		b.Run(engine, func(b *testing.B) {
			c, _ := startInProcess(&testing.T{}, b.TempDir(), "--store", engine)
			var seed atomic.Uint64
			benchPublish(b, c, func() func(int, *bytes.Buffer) {
				rng := rand.New(rand.NewPCG(seed.Add(1), 7))
				ids := make([]string, 1000)
				return func(i int, body *bytes.Buffer) {
					if i >= 200 || ids[i] == "" {
						ids[i] = storetest.RandomUUID(rng)
					}
					fmt.Fprintf(body, `{"topic":"topic-%d","event_id":"%s","timestamp":"2026-11-25T10:00:00Z","source":"bench","payload":{"n":%d}}`, i%10, ids[i], i)
				}
			})
		})
	}
}
