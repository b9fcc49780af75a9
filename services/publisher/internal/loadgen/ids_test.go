package loadgen

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"
)

// uuidV4 is the canonical form of a version 4, RFC 9562 variant UUID.
var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestUUIDsAreValidDistinctAndRepeatable(t *testing.T) {
	t.Parallel()
	g := newUUIDGen(42, "run-a")
	const n = 200_000
	seen := make(map[string]uint64, n)
	for i := range uint64(n) {
		id := string(g.appendID(nil, i))
		if !uuidV4.MatchString(id) {
			t.Fatalf("event %d: %q is not a v4 UUID", i, id)
		}
		if j, dup := seen[id]; dup {
			t.Fatalf("events %d and %d share id %s", j, i, id)
		}
		seen[id] = i
	}
	// The largest event numbers a run can have are distinct too.
	if a, b := g.appendID(nil, 1<<31-1), g.appendID(nil, 1<<31-2); string(a) == string(b) {
		t.Errorf("events 2^31-1 and 2^31-2 share id %s", a)
	}

	again := newUUIDGen(42, "run-a")
	if a, b := g.appendID(nil, 7), again.appendID(nil, 7); string(a) != string(b) {
		t.Errorf("same seed and run: %s then %s", a, b)
	}
	for _, other := range []uuidGen{newUUIDGen(43, "run-a"), newUUIDGen(42, "run-b")} {
		if _, dup := seen[string(other.appendID(nil, 7))]; dup {
			t.Errorf("another seed or run id repeats an id of this run")
		}
	}
}

func TestEncoderUUIDs(t *testing.T) {
	t.Parallel()
	cfg := Config{Topics: 3, Batch: 3, RunID: "r", Seed: 9, IDs: IDsUUID}
	body := newEncoder(&cfg, time.Now()).AppendBody(nil, []int32{5, 6, 5})
	var events []decoded
	if err := json.Unmarshal(body, &events); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if events[0] != events[2] || events[0].EventID == events[1].EventID {
		t.Errorf("copies must share an id and distinct events differ: %+v", events)
	}
	for _, e := range events {
		if !uuidV4.MatchString(e.EventID) {
			t.Errorf("event id %q is not a v4 UUID", e.EventID)
		}
	}
}

func TestValidateIDsAndOpenLoop(t *testing.T) {
	t.Parallel()
	good := Config{URL: "http://x", Events: 1, Topics: 1, Batch: 1, Concurrency: 1, Timeout: time.Second, RunID: "r"}
	for name, change := range map[string]func(*Config){
		"unknown id mode":    func(c *Config) { c.IDs = "ulid" },
		"open loop, no rate": func(c *Config) { c.OpenLoop = true },
	} {
		c := good
		change(&c)
		if c.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := good
	c.IDs, c.OpenLoop, c.Rate = IDsUUID, true, 100
	if err := c.Validate(); err != nil {
		t.Errorf("uuid ids, open loop at 100/s: %v", err)
	}
}
