package main

import (
	"bytes"
	"fmt"
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
