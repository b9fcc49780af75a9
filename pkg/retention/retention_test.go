package retention

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
)

// fakeStore records the calls and has expired rows per topic to delete.
type fakeStore struct {
	topics  []string
	expired map[string]int // rows each topic still has to delete
	kept    int            // keys still kept
	calls   []string
}

func (f *fakeStore) Counts(context.Context) ([]event.Counts, error) {
	var out []event.Counts
	for _, t := range f.topics {
		out = append(out, event.Counts{Topic: t})
	}
	return out, nil
}

func (f *fakeStore) Expire(_ context.Context, topic string, cutoff time.Time, keepKeys bool, limit int) (int, error) {
	n := min(limit, f.expired[topic])
	f.expired[topic] -= n
	if keepKeys {
		f.kept += n
	}
	f.calls = append(f.calls, fmt.Sprintf("expire %s before %s keep=%v: %d", topic, cutoff.Format("15:04"), keepKeys, n))
	return n, nil
}

func (f *fakeStore) Forget(_ context.Context, cutoff time.Time, limit int) (int, error) {
	n := min(limit, f.kept)
	f.kept -= n
	f.calls = append(f.calls, fmt.Sprintf("forget before %s: %d", cutoff.Format("15:04"), n))
	return n, nil
}

// TestOnce: each topic gets its own cutoff; topics kept forever are not
// touched; batches repeat until one comes back short; keys are kept only
// when the window outlasts the topic's retention, and forgotten only with a
// finite window.
func TestOnce(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f := &fakeStore{topics: []string{"a", "audit", "b"}, expired: map[string]int{"a": 5, "audit": 9, "b": 2}}
	r := New(f, Policy{Default: time.Hour, Topics: map[string]time.Duration{"audit": 0, "b": 3 * time.Hour},
		DedupWindow: 3 * time.Hour}, 2, nil)
	r.now = func() time.Time { return now }
	n, err := r.Once(context.Background())
	if err != nil || n != 7 {
		t.Fatalf("Once = %d, %v; want 7 deleted", n, err)
	}
	want := fmt.Sprint([]string{
		"expire a before 11:00 keep=true: 2", "expire a before 11:00 keep=true: 2", "expire a before 11:00 keep=true: 1",
		"expire b before 09:00 keep=false: 2", "expire b before 09:00 keep=false: 0",
		"forget before 09:00: 2", "forget before 09:00: 2", "forget before 09:00: 1",
	})
	if got := fmt.Sprint(f.calls); got != want {
		t.Errorf("calls\n%s\nwant\n%s", got, want)
	}

	// A window of forever keeps every key and never forgets.
	f = &fakeStore{topics: []string{"a"}, expired: map[string]int{"a": 1}}
	r = New(f, Policy{Default: time.Hour}, 10, nil)
	if _, err := r.Once(context.Background()); err != nil || f.kept != 1 || len(f.calls) != 1 {
		t.Errorf("forever window: kept %d, calls %v, err %v", f.kept, f.calls, err)
	}
}

// TestRunWithoutRetention returns at once when nothing is ever deleted.
func TestRunWithoutRetention(t *testing.T) {
	f := &fakeStore{topics: []string{"a"}, expired: map[string]int{"a": 1}}
	New(f, Policy{Topics: map[string]time.Duration{"a": 0}}, 10, nil).Run(context.Background(), time.Millisecond)
	if len(f.calls) != 0 {
		t.Errorf("calls %v with a policy that keeps everything", f.calls)
	}
}
