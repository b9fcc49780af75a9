// Package claimtest is the contract every process.Claimer must meet: the lease
// protocol of docs/architecture.md, "Claims". Each implementation's tests call Run.
package claimtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/event-aggregator/event-aggregator/pkg/event"
	"github.com/event-aggregator/event-aggregator/pkg/process"
)

// Config is the lease TTL and dedup window a case asks its claimers for.
type Config struct {
	LeaseTTL    time.Duration
	DedupWindow time.Duration
}

// NewClaimer returns a Claimer for owner. Claimers made during one test share
// one backing state, as the workers of a deployment share one Redis.
type NewClaimer func(t *testing.T, owner string, cfg Config) process.Claimer

// Long enough that nothing expires during a case that does not wait for it,
// even under -race on a loaded machine.
var long = Config{LeaseTTL: time.Minute, DedupWindow: time.Minute}

const (
	shortTTL = 200 * time.Millisecond
	// Expiry is checked as a lower bound; stores round times to milliseconds.
	clockSlack = 10 * time.Millisecond
	// Upper bound on how late an expiry may be observed.
	expiryDeadline = 5 * time.Second
)

// Run runs the contract suite against newClaimer.
func Run(t *testing.T, newClaimer NewClaimer) {
	cases := []struct {
		name string
		fn   func(t *testing.T, newClaimer NewClaimer)
	}{
		{"FirstClaimOwned", testFirstClaimOwned},
		{"SameOwnerReclaimOwned", testSameOwnerReclaim},
		{"OtherOwnerLeased", testOtherOwnerLeased},
		{"DoneSeenByEveryOwner", testDoneSeenByEveryOwner},
		{"MarkDoneWithoutClaim", testMarkDoneWithoutClaim},
		{"EmptyBatch", testEmptyBatch},
		{"LeaseExpires", testLeaseExpires},
		{"DoneWindowExpires", testDoneWindowExpires},
		{"ConcurrentClaimsOneOwner", testConcurrentClaims},
		{"LargeBatchInOrder", testLargeBatchInOrder},
		{"SimilarKeysNeverCollide", testSimilarKeys},
		{"DoneMarksAtOffsets", testDoneMarksAtOffsets},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newClaimer) })
	}
}

func testFirstClaimOwned(t *testing.T, newClaimer NewClaimer) {
	a := newClaimer(t, "a", long)
	k := keys(t, 1)
	expect(t, claim(t, a, k), process.Owned)
}

func testSameOwnerReclaim(t *testing.T, newClaimer NewClaimer) {
	a := newClaimer(t, "a", long)
	k := keys(t, 1)
	expect(t, claim(t, a, k), process.Owned)
	// A retried batch must not be mistaken for someone else's.
	expect(t, claim(t, a, k), process.Owned)
	// Nor by another Claimer of the same owner (a restarted worker).
	expect(t, claim(t, newClaimer(t, "a", long), k), process.Owned)
}

func testOtherOwnerLeased(t *testing.T, newClaimer NewClaimer) {
	a, b := newClaimer(t, "a", long), newClaimer(t, "b", long)
	k := keys(t, 1)
	expect(t, claim(t, a, k), process.Owned)
	expect(t, claim(t, b, k), process.Leased)
	expect(t, claim(t, a, k), process.Owned)
}

func testDoneSeenByEveryOwner(t *testing.T, newClaimer NewClaimer) {
	a, b := newClaimer(t, "a", long), newClaimer(t, "b", long)
	k := keys(t, 3)
	expect(t, claim(t, a, k), process.Owned, process.Owned, process.Owned)
	expect(t, claim(t, b, k), process.Leased, process.Leased, process.Leased)
	markDone(t, a, k[:2])
	expect(t, claim(t, a, k), process.Done, process.Done, process.Owned)
	for _, c := range []process.Claimer{b, newClaimer(t, "c", long)} {
		expect(t, claim(t, c, k), process.Done, process.Done, process.Leased)
	}
}

func testMarkDoneWithoutClaim(t *testing.T, newClaimer NewClaimer) {
	a, b := newClaimer(t, "a", long), newClaimer(t, "b", long)
	k := keys(t, 1)
	markDone(t, a, k)
	expect(t, claim(t, b, k), process.Done)
}

func testEmptyBatch(t *testing.T, newClaimer NewClaimer) {
	a := newClaimer(t, "a", long)
	got, err := a.Claim(t.Context(), nil, nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("Claim(nil) = %v, %v; want no claims, no error", got, err)
	}
	if err := a.MarkDone(t.Context(), nil, nil); err != nil {
		t.Fatalf("MarkDone(nil): %v", err)
	}
}

// testLeaseExpires checks that a lease holds until its TTL and that another
// owner gets the event after it, within a bounded wait.
func testLeaseExpires(t *testing.T, newClaimer NewClaimer) {
	cfg := Config{LeaseTTL: shortTTL, DedupWindow: time.Minute}
	a, b := newClaimer(t, "a", cfg), newClaimer(t, "b", cfg)
	k := keys(t, 1)

	start := time.Now()
	expect(t, claim(t, a, k), process.Owned)
	waitExpiry(t, b, k, start, cfg.LeaseTTL, process.Leased)

	// b holds it now, for its own TTL.
	start = time.Now()
	expect(t, claim(t, b, k), process.Owned)
	if got := claim(t, a, k)[0]; got != process.Leased && time.Since(start) < cfg.LeaseTTL {
		t.Fatalf("a's claim after b took over = %s; want Leased", name(got))
	}
}

func testDoneWindowExpires(t *testing.T, newClaimer NewClaimer) {
	cfg := Config{LeaseTTL: time.Minute, DedupWindow: shortTTL}
	a, b := newClaimer(t, "a", cfg), newClaimer(t, "b", cfg)
	k := keys(t, 1)
	expect(t, claim(t, a, k), process.Owned)

	start := time.Now()
	markDone(t, a, k)
	waitExpiry(t, b, k, start, cfg.DedupWindow, process.Done)
}

// waitExpiry polls c until it owns k. A state set at start with the given
// ttl must read as before until ttl has passed: a reply received earlier
// than start+ttl was answered before the state could expire.
func waitExpiry(t *testing.T, c process.Claimer, k []event.Key, start time.Time, ttl time.Duration, before process.Claim) {
	t.Helper()
	for {
		got := claim(t, c, k)[0]
		elapsed := time.Since(start)
		switch {
		case got == process.Owned && elapsed < ttl-clockSlack:
			t.Fatalf("Owned %v after a state with TTL %v was set; want %s until it expires", elapsed, ttl, name(before))
		case got == process.Owned:
			t.Logf("expired after %v (TTL %v)", elapsed.Round(time.Millisecond), ttl)
			return
		case got != before:
			t.Fatalf("claim %v after the state was set = %s; want %s", elapsed, name(got), name(before))
		case elapsed > ttl+expiryDeadline:
			t.Fatalf("still %s %v after a state with TTL %v was set", name(got), elapsed, ttl)
		}
		time.Sleep(ttl / 10)
	}
}

func testConcurrentClaims(t *testing.T, newClaimer NewClaimer) {
	const n = 50
	k := keys(t, 1)
	claimers := make([]process.Claimer, n)
	for i := range claimers {
		claimers[i] = newClaimer(t, fmt.Sprintf("w%02d", i), long)
	}
	results := make([]process.Claim, n)
	errs := make([]error, n)
	startGun := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range claimers {
		wg.Go(func() {
			<-startGun
			got, err := c.Claim(t.Context(), k, nil)
			if err == nil && len(got) != 1 {
				err = fmt.Errorf("got %d claims for 1 key", len(got))
			}
			if err == nil {
				results[i] = got[0]
			}
			errs[i] = err
		})
	}
	close(startGun)
	wg.Wait()

	owned := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("claimer %d: %v", i, errs[i])
		}
		switch r {
		case process.Owned:
			owned++
		case process.Leased:
		default:
			t.Errorf("claimer %d got %s; want Owned or Leased", i, name(r))
		}
	}
	if owned != 1 {
		t.Fatalf("%d of %d concurrent claimers own the key; want exactly 1", owned, n)
	}
}

// testLargeBatchInOrder claims a batch of mixed states in one call: the
// answers must come back in the order of the keys.
func testLargeBatchInOrder(t *testing.T, newClaimer NewClaimer) {
	const n = 1000
	a, b := newClaimer(t, "a", long), newClaimer(t, "b", long)
	k := keys(t, n)
	var done, leased []event.Key
	want := make([]process.Claim, n)
	for i := range k {
		switch i % 3 {
		case 0:
			done = append(done, k[i])
			want[i] = process.Done
		case 1:
			leased = append(leased, k[i])
			want[i] = process.Leased
		default:
			want[i] = process.Owned
		}
	}
	markDone(t, a, done)
	claim(t, b, leased)
	expect(t, claim(t, a, k), want...)
}

// testSimilarKeys marks one key at a time done; no other key of the set may
// see it. The set holds keys a byte apart and topics containing '/'.
func testSimilarKeys(t *testing.T, newClaimer NewClaimer) {
	a, b := newClaimer(t, "a", long), newClaimer(t, "b", long)
	pairs := [][2]string{
		{"a/b", "c"}, {"a", "b/c"}, {"a", "bc"}, {"ab", "c"},
		{"a", "b"}, {"a", "c"}, {"b", "b"}, {"a", "b "},
		{"a/", "b"}, {"a", "/b"}, {"a", "\u00e9"}, {"a", "\u00ea"},
	}
	for i := range pairs {
		nonce := nonce(t)
		k := make([]event.Key, len(pairs))
		want := make([]process.Claim, len(pairs))
		for j, p := range pairs {
			k[j] = event.Key{Topic: nonce + p[0], EventID: p[1]}
			want[j] = process.Owned
		}
		want[i] = process.Done
		markDone(t, a, k[i:i+1])
		expect(t, claim(t, b, k), want...)
	}
}

// testDoneMarksAtOffsets: a done mark remembers the Kafka range of the batch
// that stored the event, and drops a later copy only when the store's offset
// of that partition (the batch's From, which Persist checks) has not gone
// back before it. Otherwise the store decides, and the batch that stores the
// event again marks it anew.
func testDoneMarksAtOffsets(t *testing.T, newClaimer NewClaimer) {
	a, b := newClaimer(t, "a", long), newClaimer(t, "b", long)
	at := func(topic string, partition int, from, next int64) *process.Offset {
		return &process.Offset{Topic: topic, Partition: partition, From: from, Next: next}
	}
	k := keys(t, 2)
	markDoneAt(t, a, k[:1], at("events", 3, 0, 10))
	markDone(t, a, k[1:]) // a mark without a range
	for _, c := range []struct {
		at   *process.Offset
		want process.Claim
		why  string
	}{
		{at("events", 3, 10, 20), process.Done, "the next batch of the partition"},
		{at("events", 3, 500, 600), process.Done, "a later batch"},
		{nil, process.Done, "a batch without a range"},
		{at("events", 3, 9, 20), process.Leased, "the store went back before the mark"},
		{at("events", 3, 0, 5), process.Leased, "the store went back to the start"},
		{at("events", 4, 500, 600), process.Leased, "another partition"},
		{at("other", 3, 500, 600), process.Leased, "another topic"},
	} {
		got := claimAt(t, b, k, c.at)
		want := process.Leased
		if c.at == nil {
			want = process.Done
		}
		if got[0] != c.want || got[1] != want {
			t.Errorf("%s (%+v): marks at a range and without one read %s, %s; want %s, %s",
				c.why, c.at, name(got[0]), name(got[1]), name(c.want), name(want))
		}
	}
	// Stored again by a batch after the store went back: marked anew.
	markDoneAt(t, b, k, at("events", 3, 5, 8))
	expect(t, claimAt(t, a, k, at("events", 3, 8, 9)), process.Done, process.Done)
	expect(t, claimAt(t, a, k, at("events", 3, 7, 9)), process.Leased, process.Leased)
}

func keys(t *testing.T, n int) []event.Key {
	t.Helper()
	topic := "claimtest-" + nonce(t)
	k := make([]event.Key, n)
	for i := range k {
		k[i] = event.Key{Topic: topic, EventID: fmt.Sprintf("e-%d", i)}
	}
	return k
}

// nonce keeps each run's keys apart from other runs' on a shared server.
func nonce(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func claim(t *testing.T, c process.Claimer, k []event.Key) []process.Claim {
	t.Helper()
	return claimAt(t, c, k, nil)
}

func claimAt(t *testing.T, c process.Claimer, k []event.Key, at *process.Offset) []process.Claim {
	t.Helper()
	got, err := c.Claim(t.Context(), k, at)
	if err != nil {
		t.Fatalf("Claim(%d keys): %v", len(k), err)
	}
	if len(got) != len(k) {
		t.Fatalf("Claim(%d keys) returned %d claims", len(k), len(got))
	}
	return got
}

func markDone(t *testing.T, c process.Claimer, k []event.Key) {
	t.Helper()
	markDoneAt(t, c, k, nil)
}

func markDoneAt(t *testing.T, c process.Claimer, k []event.Key, at *process.Offset) {
	t.Helper()
	if err := c.MarkDone(t.Context(), k, at); err != nil {
		t.Fatalf("MarkDone(%d keys): %v", len(k), err)
	}
}

func expect(t *testing.T, got []process.Claim, want ...process.Claim) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d claims, want %d", len(got), len(want))
	}
	bad := 0
	for i := range got {
		if got[i] != want[i] {
			if bad < 5 {
				t.Errorf("claim %d = %s; want %s", i, name(got[i]), name(want[i]))
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d claims wrong", bad, len(got))
	}
}

func name(c process.Claim) string {
	switch c {
	case process.Owned:
		return "Owned"
	case process.Done:
		return "Done"
	case process.Leased:
		return "Leased"
	}
	return fmt.Sprintf("Claim(%d)", c)
}
