package event

import (
	"bytes"
	"fmt"
	"testing"
)

func benchBody(n int, ndjson bool) []byte {
	var b bytes.Buffer
	if !ndjson {
		b.WriteByte('[')
	}
	for i := range n {
		if i > 0 && !ndjson {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"topic":"topic-%d","event_id":"run-1-%d","timestamp":"2026-11-25T10:00:00.123Z","source":"bench","payload":{"n":%d,"note":"some text of a typical payload"}}`, i%10, i, i)
		if ndjson {
			b.WriteByte('\n')
		}
	}
	if !ndjson {
		b.WriteByte(']')
	}
	return b.Bytes()
}

// BenchmarkDecode measures decoding and validating a 1,000-event body.
func BenchmarkDecode(b *testing.B) {
	for _, f := range []struct {
		name   string
		format Format
	}{{"array", JSON}, {"ndjson", NDJSON}} {
		body := benchBody(1000, f.format == NDJSON)
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(body, f.format, DefaultLimits); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "events/s")
		})
	}
}
