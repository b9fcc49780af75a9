package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// retentionStats is GET /stats with the retention fields.
type retentionStats struct {
	stats
	Retention       *string            `json:"retention"`
	RetentionTopics map[string]*string `json:"retention_topics"`
	DedupWindow     *string            `json:"dedup_window"`
	StoredEvents    *int64             `json:"stored_events"`
	StoreBytes      *int64             `json:"store_bytes"`
}

func (s *stack) retentionStats(ctx context.Context) (retentionStats, error) {
	var st retentionStats
	err := s.readStats(ctx, &st)
	if err == nil && (st.StoredEvents == nil || st.StoreBytes == nil) {
		err = fmt.Errorf("GET /stats lacks the store's size")
	}
	return st, err
}

// TestRetentionDistributed: two workers delete what is past its retention
// (taking turns), a topic kept forever stays, the counters stay exact, the
// query service shows the policy and the events alive, and /events serves
// exactly those.
func TestRetentionDistributed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	policy := map[string]string{
		"AGGREGATOR_RETENTION":          "2s",
		"AGGREGATOR_RETENTION_TOPICS":   "probe=0s",
		"AGGREGATOR_RETENTION_INTERVAL": "100ms",
		"AGGREGATOR_RETENTION_BATCH":    "50",
	}
	s := newStack(t, stackOptions{workers: 2, workerEnv: policy, queryEnv: policy})
	rep := s.mustPublish(t, ctx, "--events", "2000", "--duplicates", "0.2", "--topics", "3", "--batch", "200",
		"--concurrency", "4", "--run-id", "ret-"+randomHex(6), "--seed", "11")
	s.publishOne(t, ctx, "stays")

	var st retentionStats
	if !waitFor(ctx, 100*time.Millisecond, func() bool {
		var err error
		st, err = s.retentionStats(ctx)
		return err == nil && *st.StoredEvents == 1
	}) {
		t.Fatalf("events past their retention not deleted: %+v, stored %v", st.stats, st.StoredEvents)
	}
	if st.Unique != rep.DistinctEvents+1 || st.Received != st.Unique+st.Duplicates {
		t.Fatalf("counts after deletion: %+v; want %d unique", st.stats, rep.DistinctEvents+1)
	}
	if st.Retention == nil || *st.Retention != "2s" || st.DedupWindow != nil || len(st.RetentionTopics) != 1 ||
		st.RetentionTopics["probe"] != nil {
		t.Errorf("policy shown: retention %v, topics %v, dedup window %v", st.Retention, st.RetentionTopics, st.DedupWindow)
	}
	page := s.eventsPage(t, ctx, "")
	if len(page.Events) != 1 || page.NextCursor != "" {
		t.Fatalf("/events serves %d events (next %q), want the one kept forever", len(page.Events), page.NextCursor)
	}
	var deleted, kept, emptyCommits int64
	if err := s.db.QueryRow(ctx, `SELECT (SELECT sum(events)::bigint FROM deleted_events), (SELECT count(*) FROM expired_keys),
		(SELECT count(*) FROM event_commits c WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.txid = c.txid))`).
		Scan(&deleted, &kept, &emptyCommits); err != nil {
		t.Fatalf("read the store: %v", err)
	}
	if deleted != rep.DistinctEvents || kept != deleted || emptyCommits != 0 {
		t.Fatalf("%d deleted, %d keys kept, %d empty commits; want %d, %d, 0", deleted, kept, emptyCommits, rep.DistinctEvents, rep.DistinctEvents)
	}
}
