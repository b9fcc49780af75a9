package loadgen

import (
	"strings"
	"testing"
)

func TestJudgeChecksTheCounterIdentity(t *testing.T) {
	t.Parallel()
	good := Verification{
		Settled: true, ExpectedUnique: 8, MinReceived: 10,
		Baseline: Stats{Received: 5, UniqueProcessed: 4, DuplicateDropped: 1},
		Final:    Stats{Received: 15, UniqueProcessed: 12, DuplicateDropped: 3},
	}
	v := good
	v.judge(0, nil)
	if v.Status != VerifyOK {
		t.Fatalf("consistent counters: %s: %s", v.Status, v.Message)
	}

	// The deltas still match, but received ≠ unique + dropped afterwards.
	v = good
	v.Final.Received, v.Baseline.Received = 16, 6
	v.judge(0, nil)
	if v.Status != VerifyFailed || !strings.Contains(v.Message, "after the run received 16 ≠ unique_processed 12 + duplicate_dropped 3") {
		t.Errorf("broken identity: %s: %s", v.Status, v.Message)
	}

	// Even when the expected count is unknown, a broken identity fails.
	v = good
	v.Final.DuplicateDropped = 2
	v.judge(3, nil)
	if v.Status != VerifyFailed {
		t.Errorf("broken identity with unacknowledged events: %s: %s", v.Status, v.Message)
	}
}
