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

// BenchmarkDecode measures decoding and validating a 1,000-event body, and a
// body of one event object, the usual single-event request.
func BenchmarkDecode(b *testing.B) {
	for _, f := range []struct {
		name   string
		format Format
		body   []byte
		events int
	}{
		{"array", JSON, benchBody(1000, false), 1000},
		{"ndjson", NDJSON, benchBody(1000, true), 1000},
		{"object", JSON, bytes.Trim(benchBody(1, false), "[]"), 1},
		{"object-uuid", JSON, []byte(`{"topic":"orders","event_id":"0b6f3c3e-8d9a-4c47-9a51-3f0e2b7c1d24","timestamp":"2026-11-25T10:00:00.123456Z","source":"shop-eu-1","payload":{"order":1234,"items":[{"sku":"A-1","qty":2}],"total":19.99,"note":"gift"}}`), 1},
	} {
		b.Run(f.name, func(b *testing.B) {
			b.SetBytes(int64(len(f.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(f.body, f.format, DefaultLimits); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*float64(f.events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
