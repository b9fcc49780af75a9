package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/event-aggregator/event-aggregator/services/publisher/internal/loadgen"
)

// runCLI runs the command in-process and returns stdout, stderr (with the returned
// error appended, as main prints it) and the exit code.
func runCLI(ctx context.Context, args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	err := run(ctx, args, &out, &errOut)
	if err != nil {
		errOut.WriteString("publisher: " + err.Error())
	}
	return out.String(), errOut.String(), exitCode(err)
}

// publishJSON runs against url with --json and decodes the summary.
func publishJSON(t *testing.T, url string, args ...string) (loadgen.Report, string, int) {
	t.Helper()
	base := []string{"--url", url, "--json", "--no-progress", "--seed", "7",
		"--settle-quiet", "50ms", "--settle-timeout", "30s", "--timeout", "10s"}
	out, errOut, code := runCLI(t.Context(), append(base, args...)...)
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output does not parse: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	return rep, errOut, code
}

func TestDistinctAndDuplicatesReachTheServer(t *testing.T) {
	t.Parallel()
	f, srv := newAggregator(t, nil)
	rep, errOut, code := publishJSON(t, srv.URL,
		"--events", "2000", "--topics", "7", "--duplicates", "0.2", "--batch", "50", "--concurrency", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := f.snapshot(t)

	// 20% of everything sent is re-sends: 2000 distinct need 500 duplicates.
	if rep.DistinctEvents != 2000 || rep.DuplicatesSent != 500 || rep.EventsSent != 2500 {
		t.Errorf("sent %d = %d distinct + %d duplicates, want 2500 = 2000 + 500",
			rep.EventsSent, rep.DistinctEvents, rep.DuplicatesSent)
	}
	if rep.DuplicatesInBatch+rep.DuplicatesSoon+rep.DuplicatesLate != rep.DuplicatesSent ||
		rep.DuplicatesInBatch == 0 || rep.DuplicatesSoon == 0 || rep.DuplicatesLate == 0 {
		t.Errorf("placement %d in batch + %d soon + %d late, want every kind, adding up to %d",
			rep.DuplicatesInBatch, rep.DuplicatesSoon, rep.DuplicatesLate, rep.DuplicatesSent)
	}
	if got.unique != 2000 || got.received != 2500 || got.dropped != 500 {
		t.Errorf("server: unique %d, received %d, dropped %d; want 2000, 2500, 500", got.unique, got.received, got.dropped)
	}
	// Soon re-sends may land in their original's request too, so at least.
	if got.inRequestDups < rep.DuplicatesInBatch {
		t.Errorf("server saw %d duplicates inside one request, want at least %d", got.inRequestDups, rep.DuplicatesInBatch)
	}
	if got.copyMismatches != 0 {
		t.Errorf("%d re-sends differ from their first copy", got.copyMismatches)
	}
	if got.topics != 7 {
		t.Errorf("server saw %d topics, want 7", got.topics)
	}
	if rep.Requests != 50 || got.requests != 50 || rep.Retries != 0 || rep.Failures != 0 {
		t.Errorf("requests %d (server %d), retries %d, failures %d; want 50, 50, 0, 0",
			rep.Requests, got.requests, rep.Retries, rep.Failures)
	}
	v := rep.Verification
	if v == nil || v.Status != loadgen.VerifyOK || v.UniqueDelta != 2000 || v.ReceivedDelta != 2500 || v.DuplicateDroppedDelta != 500 {
		t.Errorf("verification = %+v, want ok with +2000 unique, +2500 received, +500 dropped", v)
	}
	if rep.Latency.Count != 50 || rep.Latency.P50 > rep.Latency.P95 || rep.Latency.P95 > rep.Latency.P99 || rep.Latency.P99 > rep.Latency.Max {
		t.Errorf("latency = %+v, want 50 samples in order p50 <= p95 <= p99 <= max", rep.Latency)
	}
	if rep.EventsPerSecond <= 0 || rep.RequestsPerSecond <= 0 {
		t.Errorf("rates %v events/s, %v requests/s, want positive", rep.EventsPerSecond, rep.RequestsPerSecond)
	}
}

func TestRetriesOnBusyServer(t *testing.T) {
	t.Parallel()
	f, srv := newAggregator(t, func(f *faults) { f.unavailableFirst = 5 })
	rep, errOut, code := publishJSON(t, srv.URL, "--events", "1000", "--batch", "40", "--concurrency", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := f.snapshot(t)
	if rep.Retries != 5 || rep.Responses["503"] != 5 || rep.Failures != 0 {
		t.Errorf("retries %d, 503s %d, failures %d; want 5, 5, 0", rep.Retries, rep.Responses["503"], rep.Failures)
	}
	// A 503 stores nothing, so the server drops exactly the planned re-sends.
	if got.dropped != int64(rep.DuplicatesSent) || got.unique != 1000 {
		t.Errorf("server dropped %d, unique %d; want %d, 1000", got.dropped, got.unique, rep.DuplicatesSent)
	}
	if rep.Verification.Status != loadgen.VerifyOK {
		t.Errorf("verification %s: %s", rep.Verification.Status, rep.Verification.Message)
	}
}

func TestRetryAfterStoredButFailed(t *testing.T) {
	t.Parallel()
	f, srv := newAggregator(t, func(f *faults) {
		f.storeThenFail = func(n int) bool { return n == 3 || n == 8 }
		f.storeThenHangUp = func(n int) bool { return n == 5 }
	})
	rep, errOut, code := publishJSON(t, srv.URL, "--events", "1500", "--batch", "30", "--concurrency", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := f.snapshot(t)
	if rep.Retries != 3 || rep.Responses["500"] != 2 || rep.Responses["error"] != 1 || rep.Failures != 0 {
		t.Errorf("retries %d, responses %v, failures %d; want 3 retries after two 500s and a hang-up",
			rep.Retries, rep.Responses, rep.Failures)
	}
	if got.failedOut == 0 || rep.ResentEvents != int(got.failedOut) {
		t.Errorf("resent %d events, server stored %d events it did not acknowledge", rep.ResentEvents, got.failedOut)
	}
	// Every copy beyond the first is dropped: planned re-sends plus retry re-deliveries.
	if want := int64(rep.DuplicatesSent) + got.failedOut; got.dropped != want {
		t.Errorf("server dropped %d, want %d duplicates sent + %d re-delivered", got.dropped, rep.DuplicatesSent, got.failedOut)
	}
	v := rep.Verification
	if v.Status != loadgen.VerifyOK || v.UniqueDelta != 1500 || v.ReceivedDelta != int64(rep.EventsAcknowledged)+got.failedOut {
		t.Errorf("verification = %+v, want ok, +1500 unique, received %d over the acknowledged", v, got.failedOut)
	}
}

func TestVerificationFailsWhenAnEventIsLost(t *testing.T) {
	t.Parallel()
	_, srv := newAggregator(t, func(f *faults) { f.loseEventID = "lossy-17" })
	rep, errOut, code := publishJSON(t, srv.URL, "--events", "500", "--run-id", "lossy", "--batch", "25")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, errOut)
	}
	v := rep.Verification
	if v == nil || v.Status != loadgen.VerifyFailed || v.UniqueDelta != 499 || v.ExpectedUnique != 500 {
		t.Fatalf("verification = %+v, want failed with 499 of 500", v)
	}
	if !strings.Contains(errOut, "1 acknowledged events are missing") {
		t.Errorf("stderr does not say what was lost: %s", errOut)
	}
}

func TestUnacknowledgedEventsFailTheRun(t *testing.T) {
	t.Parallel()
	_, srv := newAggregator(t, func(f *faults) {
		f.alwaysFail = func(ids []string) bool { return slices.Contains(ids, "stuck-3") }
	})
	rep, errOut, code := publishJSON(t, srv.URL, "--events", "200", "--run-id", "stuck", "--batch", "20", "--retries", "2", "--duplicates", "0")
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, errOut)
	}
	if rep.Failures != 1 || rep.Unacknowledged != 20 || rep.Retries != 2 {
		t.Errorf("failures %d, unacknowledged %d, retries %d; want 1, 20, 2", rep.Failures, rep.Unacknowledged, rep.Retries)
	}
	if rep.Verification.Status != loadgen.VerifyUndecidable {
		t.Errorf("verification %s, want %s", rep.Verification.Status, loadgen.VerifyUndecidable)
	}
	if !strings.Contains(errOut, "20 distinct events were never acknowledged") || !strings.Contains(errOut, "HTTP 503") {
		t.Errorf("stderr lacks a clear message: %s", errOut)
	}
}

func TestBodies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, contentType string
		args              []string
		single            bool
	}{
		{"array", "application/json", []string{"--batch", "10"}, false},
		{"single event objects", "application/json", []string{"--batch", "1"}, true},
		{"ndjson", "application/x-ndjson", []string{"--batch", "10", "--ndjson"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, srv := newAggregator(t, nil)
			rep, errOut, code := publishJSON(t, srv.URL, append(tc.args, "--events", "150", "--payload-bytes", "300")...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			got := f.snapshot(t)
			if got.contentTypes[tc.contentType] != got.requests {
				t.Errorf("content types %v, want all %s", got.contentTypes, tc.contentType)
			}
			if (got.singleObjects == got.requests) != tc.single {
				t.Errorf("%d of %d requests were single objects", got.singleObjects, got.requests)
			}
			if got.unique != 150 || got.dropped != int64(rep.DuplicatesSent) || got.copyMismatches != 0 {
				t.Errorf("server unique %d, dropped %d, mismatched copies %d; want 150, %d, 0",
					got.unique, got.dropped, got.copyMismatches, rep.DuplicatesSent)
			}
		})
	}
}

func TestBaselineExcludesEarlierRuns(t *testing.T) {
	t.Parallel()
	f, srv := newAggregator(t, nil)
	for _, id := range []string{"first", "second"} {
		rep, errOut, code := publishJSON(t, srv.URL, "--events", "300", "--run-id", id)
		if code != 0 {
			t.Fatalf("run %s: exit %d: %s", id, code, errOut)
		}
		if rep.Verification.UniqueDelta != 300 {
			t.Errorf("run %s: unique delta %d, want 300", id, rep.Verification.UniqueDelta)
		}
	}
	if got := f.snapshot(t); got.unique != 600 {
		t.Errorf("server unique %d, want 600", got.unique)
	}
}

func TestAPIKey(t *testing.T) {
	t.Parallel()
	f, srv := newAggregator(t, func(f *faults) { f.apiKey = "s3cret" })
	if _, errOut, code := publishJSON(t, srv.URL, "--events", "100", "--api-key", "s3cret"); code != 0 {
		t.Fatalf("with key: exit %d: %s", code, errOut)
	}
	if got := f.snapshot(t); got.unique != 100 {
		t.Errorf("server unique %d, want 100", got.unique)
	}
	_, errOut, code := runCLI(t.Context(), "--url", srv.URL, "--events", "100", "--no-progress")
	if code != 1 || !strings.Contains(errOut, "HTTP 401") {
		t.Errorf("without key: exit %d, stderr %q; want 1 and the 401", code, errOut)
	}
}

func TestInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, srv := newAggregator(t, func(f *faults) {
		f.onPublish = func(n int) {
			if n == 3 {
				cancel()
			}
		}
	})
	out, errOut, code := runCLI(ctx, "--url", srv.URL, "--events", "5000", "--batch", "10", "--concurrency", "2", "--no-progress")
	if code != 1 || !strings.Contains(errOut, "interrupted") {
		t.Errorf("exit %d, stderr %q; want 1 and interrupted", code, errOut)
	}
	if !strings.Contains(out, "interrupted") {
		t.Errorf("summary does not say it was interrupted:\n%s", out)
	}
}

func TestTextSummary(t *testing.T) {
	t.Parallel()
	_, srv := newAggregator(t, nil)
	out, errOut, code := runCLI(t.Context(), "--url", srv.URL, "--events", "400", "--no-progress", "--settle-quiet", "50ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"400 distinct + 100 duplicates", "events/s", "p99", "verification   ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if errOut != "" {
		t.Errorf("stderr not empty without a terminal: %q", errOut)
	}
}

func TestNoVerify(t *testing.T) {
	t.Parallel()
	f, srv := newAggregator(t, nil)
	rep, errOut, code := publishJSON(t, srv.URL, "--events", "100", "--verify=false")
	if code != 0 || rep.Verification != nil {
		t.Fatalf("exit %d (%s), verification %+v; want 0 and none", code, errOut, rep.Verification)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.statsReads != 0 {
		t.Errorf("/stats read %d times with --verify=false", f.statsReads)
	}
}

func TestEnvironment(t *testing.T) {
	// t.Setenv: not parallel.
	_, srv := newAggregator(t, nil)
	t.Setenv("PUBLISHER_URL", srv.URL)
	t.Setenv("PUBLISHER_EVENTS", "120")
	t.Setenv("PUBLISHER_DUPLICATES", "0.25")
	out, errOut, code := runCLI(t.Context(), "--json", "--no-progress", "--settle-quiet", "50ms")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.DistinctEvents != 120 || rep.DuplicatesSent != 40 {
		t.Errorf("%d distinct + %d duplicates, want 120 + 40", rep.DistinctEvents, rep.DuplicatesSent)
	}
}

func TestUUIDsOpenLoop(t *testing.T) {
	t.Parallel()
	f, srv := newAggregator(t, nil)
	rep, errOut, code := publishJSON(t, srv.URL, "--events", "300", "--batch", "1", "--duplicates", "0.2",
		"--ids", "uuid", "--open-loop", "--rate", "100000", "--concurrency", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if rep.IDs != "uuid" || !rep.OpenLoop || rep.Verification == nil || rep.Verification.Status != loadgen.VerifyOK {
		t.Fatalf("report: ids %q, open loop %t, verification %+v", rep.IDs, rep.OpenLoop, rep.Verification)
	}
	got := f.snapshot(t)
	if got.unique != 300 || got.received != 375 || got.copyMismatches != 0 {
		t.Errorf("server: unique %d, received %d, %d copies differ; want 300, 375, 0", got.unique, got.received, got.copyMismatches)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	for k := range f.first {
		if !uuid.MatchString(k.EventID) {
			t.Fatalf("event id %q is not a v4 UUID", k.EventID)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	out, errOut, code := runCLI(t.Context(), "--help")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"--url=\"http://127.0.0.1:8080\"", "--events=10000", "--duplicates=0.2",
		"--batch=100", "--concurrency=8", "--retries=5", "--settle-timeout=60s", "PUBLISHER_RATE", "--json"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--bogus"},
		{"--events", "many"},
		{"--events", "0"},
		{"--duplicates", "1"},
		{"--duplicates", "-0.1"},
		{"--batch", "0"},
		{"--concurrency", "0"},
		{"--url", "ftp://example"},
		{"--timeout", "0s"},
		{"--run-id", "bad\nid"},
		{"--ids", "ulid"},
		{"--open-loop"}, // without --rate
		{"extra-argument"},
	} {
		_, errOut, code := runCLI(t.Context(), args...)
		if code != 2 || errOut == "" {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a message", args, code, errOut)
		}
	}
}
