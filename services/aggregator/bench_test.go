package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"testing"
)

// BenchmarkPublishBatched drives the whole all-in-one path over loopback
// HTTP: 1,000-event bodies with 20% duplicates from 8 clients.
func BenchmarkPublishBatched(b *testing.B) {
	c, _ := startInProcess(&testing.T{}, b.TempDir())
	var seq atomic.Int64
	b.SetParallelism(4) // 4 × GOMAXPROCS(2) = 8 clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var body bytes.Buffer
		for pb.Next() {
			base := seq.Add(800) - 800
			body.Reset()
			body.WriteByte('[')
			for i := range 1000 {
				if i > 0 {
					body.WriteByte(',')
				}
				n := base + int64(i%800) // the last 200 repeat: 20% duplicates
				fmt.Fprintf(&body, `{"topic":"topic-%d","event_id":"e-%d","timestamp":"2026-11-25T10:00:00Z","source":"bench","payload":{"n":%d}}`, n%10, n, n)
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

// BenchmarkPublishUUID is BenchmarkPublishBatched with random UUIDv4 ids, as
// real publishers send them, on each store engine: 200 of each 1,000 events
// repeat ids of the client's previous body.
func BenchmarkPublishUUID(b *testing.B) {
	for _, engine := range []string{"sqlite", "pebble"} {
		b.Run(engine, func(b *testing.B) {
			c, _ := startInProcess(&testing.T{}, b.TempDir(), "--store", engine)
			var seed atomic.Uint64
			b.SetParallelism(4) // 4 × GOMAXPROCS(2) = 8 clients
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(seed.Add(1), 7))
				var body bytes.Buffer
				ids := make([]string, 1000)
				for pb.Next() {
					body.Reset()
					body.WriteByte('[')
					for i := range ids {
						if i >= 200 || ids[i] == "" {
							hi, lo := rng.Uint64(), rng.Uint64()
							ids[i] = fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", hi>>32, hi>>16&0xffff, hi&0xfff,
								lo>>48&0x3fff|0x8000, lo&0xffffffffffff)
						}
						if i > 0 {
							body.WriteByte(',')
						}
						fmt.Fprintf(&body, `{"topic":"topic-%d","event_id":"%s","timestamp":"2026-11-25T10:00:00Z","source":"bench","payload":{"n":%d}}`, i%10, ids[i], i)
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
		})
	}
}
