package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/event-aggregator/event-aggregator/services/publisher/internal/loadgen"
)

// writeSummary prints the report for a person.
func writeSummary(w io.Writer, r *loadgen.Report) error {
	var b strings.Builder
	line := func(label, format string, a ...any) {
		fmt.Fprintf(&b, "%-14s %s\n", label, fmt.Sprintf(format, a...))
	}
	body := "JSON"
	if r.NDJSON {
		body = "NDJSON"
	}
	loop := "closed loop"
	if r.OpenLoop {
		loop = fmt.Sprintf("open loop at %.0f events/s", r.Rate)
	} else if r.Rate > 0 {
		loop = fmt.Sprintf("closed loop paced at %.0f events/s", r.Rate)
	}
	line("run", "%s → %s (%d topics, batch %d, concurrency %d, %s, %s ids, %s, seed %d)",
		r.RunID, r.URL, r.Topics, r.Batch, r.Concurrency, body, r.IDs, loop, r.Seed)
	line("events sent", "%d = %d distinct + %d duplicates (planned: %d in the same request, %d soon after, %d late out of order)",
		r.EventsSent, r.DistinctEvents, r.DuplicatesSent, r.DuplicatesInBatch, r.DuplicatesSoon, r.DuplicatesLate)
	line("acknowledged", "%d events, %d distinct; %d distinct never acknowledged",
		r.EventsAcknowledged, r.DistinctAcknowledged, r.Unacknowledged)
	line("requests", "%d (%d retries re-sending %d events; %d failed after all retries)",
		r.Requests, r.Retries, r.ResentEvents, r.Failures)
	if len(r.Responses) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.Responses)) {
			parts = append(parts, fmt.Sprintf("%s×%d", k, r.Responses[k]))
		}
		line("responses", "%s", strings.Join(parts, "  "))
	}
	if r.FirstError != "" {
		line("first error", "%s", r.FirstError)
	}
	line("elapsed", "%.3fs  %.0f events/s  %.0f requests/s", r.ElapsedSeconds, r.EventsPerSecond, r.RequestsPerSecond)
	l := r.Latency
	line("latency", "p50 %.2fms  p95 %.2fms  p99 %.2fms  (min %.2fms, mean %.2fms, max %.2fms, n=%d)",
		l.P50, l.P95, l.P99, l.Min, l.Mean, l.Max, l.Count)
	if r.Interrupted {
		line("interrupted", "not every event was sent")
	}
	if v := r.Verification; v != nil {
		line("verification", "%s: %s", v.Status, v.Message)
		if v.Status != loadgen.VerifySkipped {
			line("", "unique_processed +%d (expected %d), received +%d (acknowledged %d), duplicate_dropped +%d; settled=%t after %.1fs",
				v.UniqueDelta, v.ExpectedUnique, v.ReceivedDelta, v.MinReceived, v.DuplicateDroppedDelta, v.Settled, v.SettleSeconds)
		}
	} else {
		line("verification", "off")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
