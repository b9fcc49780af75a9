package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// report is the part of the publisher's --json summary the checks read.
type report struct {
	RunID                string         `json:"run_id"`
	Topics               int            `json:"topics"`
	EventsSent           int64          `json:"events_sent"` // first attempts, duplicates included
	DistinctEvents       int64          `json:"distinct_events"`
	DuplicatesSent       int64          `json:"duplicates_sent"`
	EventsAcknowledged   int64          `json:"events_acknowledged"`
	DistinctAcknowledged int64          `json:"distinct_acknowledged"`
	Unacknowledged       int64          `json:"unacknowledged_events"`
	Requests             int64          `json:"requests"`
	Retries              int64          `json:"retries"`
	ResentEvents         int64          `json:"resent_events"`
	Failures             int64          `json:"failures"`
	Responses            map[string]int `json:"responses"`
	FirstError           string         `json:"first_error"`
	ElapsedSeconds       float64        `json:"elapsed_seconds"`
	EventsPerSecond      float64        `json:"events_per_second"`
	Verification         *struct {
		Status         string `json:"status"`
		Message        string `json:"message"`
		ExpectedUnique int64  `json:"expected_unique"`
		UniqueDelta    int64  `json:"unique_delta"`
		ReceivedDelta  int64  `json:"received_delta"`
	} `json:"verification"`
}

// publishResult is one publisher run.
type publishResult struct {
	rep    *report
	err    error  // the exit status
	stderr string // its log
}

// publish runs the publisher against the stack and returns its report. The
// publisher's own verification reads the stack's /stats.
func (s *stack) publish(ctx context.Context, args ...string) publishResult {
	all := append([]string{"--url", s.ingestURL(), "--query-url", s.queryURL(), "--json", "--no-progress"}, args...)
	cmd := exec.CommandContext(ctx, bin.publisher, all...)
	cmd.Env = baseEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := publishResult{err: err, stderr: stderr.String()}
	var rep report
	if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr == nil {
		res.rep = &rep
	} else if err == nil {
		res.err = fmt.Errorf("publisher summary: %w (stdout %q)", jerr, stdout.String())
	}
	return res
}

// mustPublish runs the publisher and fails the test unless its run and its
// verification succeeded.
func (s *stack) mustPublish(t *testing.T, ctx context.Context, args ...string) *report {
	t.Helper()
	return s.checkPublished(t, s.publish(ctx, args...))
}

func (s *stack) checkPublished(t *testing.T, r publishResult) *report {
	t.Helper()
	if r.rep == nil {
		t.Fatalf("publisher: %v\n%s", r.err, r.stderr)
	}
	rep := r.rep
	t.Logf("publisher: %d sent (%d distinct + %d duplicates), %d acknowledged, %d retries re-sending %d events, responses %v, %.0f events/s",
		rep.EventsSent, rep.DistinctEvents, rep.DuplicatesSent, rep.EventsAcknowledged, rep.Retries, rep.ResentEvents,
		rep.Responses, rep.EventsPerSecond)
	if r.err != nil {
		msg := ""
		if rep.Verification != nil {
			msg = rep.Verification.Status + ": " + rep.Verification.Message
		}
		t.Fatalf("publisher failed: %v; verification %s; first error %q\n%s", r.err, msg, rep.FirstError, r.stderr)
	}
	if rep.Unacknowledged != 0 || rep.DistinctAcknowledged != rep.DistinctEvents {
		t.Fatalf("publisher: %d of %d distinct events never acknowledged (first error %q)",
			rep.Unacknowledged, rep.DistinctEvents, rep.FirstError)
	}
	if v := rep.Verification; v == nil || v.Status != "ok" {
		t.Fatalf("publisher verification: %+v", v)
	}
	return rep
}

// counts is what a scenario ends with.
type counts struct {
	records    int64 // records in the events topic
	received   int64
	unique     int64
	duplicates int64
	rows       int64
}

func (c counts) String() string {
	return fmt.Sprintf("records %d, received %d = unique %d + duplicates %d, rows %d",
		c.records, c.received, c.unique, c.duplicates, c.rows)
}

// checkExact waits for the pipeline to drain, then checks the invariants of
// docs/architecture.md ("Invariants") against the publisher's report (nil when the scenario wrote
// the records itself). poison is the number of undecodable records in the
// topic: they are dead-lettered, not counted.
func (s *stack) checkExact(t *testing.T, ctx context.Context, rep *report, poison int64) counts {
	t.Helper()
	var c counts
	c.records = s.waitDrained(t, ctx, 2*time.Minute)

	// The counters of the query service, its database and the rows agree.
	st, err := s.stats(ctx)
	if err != nil {
		t.Fatalf("GET /stats: %v", err)
	}
	c.received, c.unique, c.duplicates = st.Received, st.Unique, st.Duplicates
	var keys, sumReceived, sumUnique, sumDup int64
	err = s.db.QueryRow(ctx, `SELECT count(*), count(DISTINCT (topic, event_id)) FROM events`).Scan(&c.rows, &keys)
	if err == nil {
		err = s.db.QueryRow(ctx, `SELECT coalesce(sum(received), 0)::bigint, coalesce(sum(unique_processed), 0)::bigint,
			coalesce(sum(duplicate_dropped), 0)::bigint FROM counters`).Scan(&sumReceived, &sumUnique, &sumDup)
	}
	if err != nil {
		t.Fatalf("read the database: %v", err)
	}
	t.Logf("counts: %s", c)
	if st.Received != st.Unique+st.Duplicates {
		t.Errorf("received %d != unique_processed %d + duplicate_dropped %d", st.Received, st.Unique, st.Duplicates)
	}
	if sumReceived != st.Received || sumUnique != st.Unique || sumDup != st.Duplicates {
		t.Errorf("/stats %+v disagrees with the counters table (%d, %d, %d)", st, sumReceived, sumUnique, sumDup)
	}
	if c.rows != keys {
		t.Errorf("%d rows but %d distinct (topic, event_id): an event stored twice", c.rows, keys)
	}
	if c.rows != st.Unique {
		t.Errorf("%d rows stored but unique_processed is %d", c.rows, st.Unique)
	}
	// Each record of the topic is counted exactly once, across crashes,
	// retries and rebalances.
	if st.Received != c.records-poison {
		t.Errorf("received %d, but the topic holds %d records (%d poison): records counted %+d times too often",
			st.Received, c.records, poison, st.Received-(c.records-poison))
	}
	s.checkCommitted(t, ctx)
	if rep == nil {
		return c
	}

	// Every acknowledged event is stored once, and nothing else of the run.
	prefix := rep.RunID + "-"
	var runRows, runIDs, lo, hi int64
	err = s.db.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id),
			coalesce(min(substr(event_id, length($1) + 1)::bigint), -1),
			coalesce(max(substr(event_id, length($1) + 1)::bigint), -1)
		FROM events WHERE starts_with(event_id, $1)`, prefix).Scan(&runRows, &runIDs, &lo, &hi)
	if err != nil {
		t.Fatalf("read the run's events: %v", err)
	}
	if runRows != rep.DistinctAcknowledged || runIDs != runRows || lo != 0 || hi != rep.DistinctEvents-1 {
		t.Errorf("stored %d rows (%d distinct ids, numbers %d..%d) of run %s; want each of the %d acknowledged events once",
			runRows, runIDs, lo, hi, rep.RunID, rep.DistinctAcknowledged)
	}
	if st.Unique != rep.DistinctAcknowledged {
		t.Errorf("unique_processed %d, distinct events acknowledged %d", st.Unique, rep.DistinctAcknowledged)
	}
	// What was received against what was sent: at least every acknowledged
	// copy, at most every copy sent including the retries' re-sends.
	if st.Received < rep.EventsAcknowledged || st.Received > rep.EventsSent+rep.ResentEvents {
		t.Errorf("received %d, want between the %d copies acknowledged and the %d sent (%d + %d re-sent by retries)",
			st.Received, rep.EventsAcknowledged, rep.EventsSent+rep.ResentEvents, rep.EventsSent, rep.ResentEvents)
	}
	if rep.Retries == 0 && st.Received != rep.EventsSent {
		t.Errorf("received %d, sent %d without a retry", st.Received, rep.EventsSent)
	}
	want := make([]string, rep.Topics)
	for i := range want {
		want[i] = "topic-" + strconv.Itoa(i)
	}
	slices.Sort(want)
	if !slices.Equal(st.Topics, want) {
		t.Errorf("/stats topics %v, want %v", st.Topics, want)
	}
	return c
}

// checkCommitted checks the commit order of the offsets: the store's
// transaction first, Kafka's commit after it, so the group's committed offset
// of a partition is never ahead of the one the store holds. (It may lag
// behind: a partition that moved to a worker with nothing left to process
// keeps the previous owner's last commit until the next batch.)
func (s *stack) checkCommitted(t *testing.T, ctx context.Context) {
	t.Helper()
	// Kafka first: the store's offsets only grow, so a later read of them
	// can only widen the margin.
	committed, err := s.committedOffsets(ctx)
	if err != nil {
		t.Fatalf("committed offsets: %v", err)
	}
	stored, err := s.storedOffsets(ctx)
	if err != nil {
		t.Fatalf("stored offsets: %v", err)
	}
	var lag []string
	commits := 0
	for p, c := range committed {
		if c < 0 {
			continue // never committed
		}
		commits++
		if next, ok := stored[p]; !ok || c > next {
			t.Errorf("partition %d: Kafka's committed offset %d is ahead of the store's %d (stored: %v)", p, c, next, ok)
		}
		if c < stored[p] {
			lag = append(lag, fmt.Sprintf("p%d %d/%d", p, c, stored[p]))
		}
	}
	if commits == 0 {
		t.Errorf("the group committed no offset to Kafka")
	}
	if len(lag) > 0 {
		t.Logf("Kafka's committed offsets behind the store's (committed/stored): %s", strings.Join(lag, ", "))
	}
}
