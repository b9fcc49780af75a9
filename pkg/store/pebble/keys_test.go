package pebble

import (
	"bytes"
	"fmt"
	"testing"
)

func TestPackUUID(t *testing.T) {
	const id = "0f8e7d6c-5b4a-4392-a1b0-c9d8e7f6a5b4"
	u, ok := packUUID(id)
	if !ok {
		t.Fatalf("packUUID(%q) refused", id)
	}
	if back := fmt.Sprintf("%x-%x-%x-%x-%x", u[:4], u[4:6], u[6:8], u[8:10], u[10:]); back != id {
		t.Fatalf("packUUID(%q) = %x, which reads back as %q", id, u, back)
	}
	for _, bad := range []string{
		"0F8E7D6C-5B4A-4392-A1B0-C9D8E7F6A5B4",  // uppercase: another id
		"0f8e7d6c-5b4a-4392-a1b0-c9d8e7f6a5b",   // short
		"0f8e7d6c-5b4a-4392-a1b0-c9d8e7f6a5b4f", // long
		"0f8e7d6c5b4a-4392-a1b0-c9d8e7f6a5b4-",  // hyphens elsewhere
		"0f8e7d6c-5b4a-4392-a1b0-c9d8e7f6a5bg",  // not hex
		"{f8e7d6c-5b4a-4392-a1b0-c9d8e7f6a5b4",
	} {
		if _, ok := packUUID(bad); ok {
			t.Errorf("packUUID(%q) accepted", bad)
		}
	}
}

// Every id has its own packed key, whatever bytes it holds, including ids
// that spell another id's packed form.
func TestPackedKeysAreDistinct(t *testing.T) {
	const id = "0f8e7d6c-5b4a-4392-a1b0-c9d8e7f6a5b4"
	u, _ := packUUID(id)
	ids := []string{
		id,
		"0F8E7D6C-5B4A-4392-A1B0-C9D8E7F6A5B4",
		"\x00" + string(u[:]),
		"\x01\x00" + string(u[:]),
		"\x01",
		"\x01\x01",
		string(u[:]),
		"order-1",
	}
	seen := map[string]string{}
	for _, id := range ids {
		k := layoutPacked.dedupKey(nil, "t", id)
		if other, dup := seen[string(k)]; dup {
			t.Errorf("ids %q and %q share the key %x", id, other, k)
		}
		seen[string(k)] = id
	}
	if k := layoutPacked.dedupKey(nil, "t", id); len(k) != 1+1+1+1+16 {
		t.Errorf("packed key of a UUID is %d bytes: %x", len(k), k)
	}
	if k := layoutText.dedupKey(nil, "t", id); !bytes.HasSuffix(k, []byte(id)) {
		t.Errorf("text key %q does not end in the id", k)
	}
}
