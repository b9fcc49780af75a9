package kafka

import "testing"

// Replicated topics require two in-sync replicas, so acks=all means at
// least two copies; one replica cannot require two.
func TestEventTopicsMinInsyncReplicas(t *testing.T) {
	for _, tc := range []struct {
		replication, minISR int
		want                string
	}{{1, 0, ""}, {2, 0, "2"}, {3, 0, "2"}, {5, 0, "2"}, {3, 3, "3"}, {1, 1, "1"}, {5, 1, "1"}} {
		specs := EventTopics("events", "events.dlq", 12, tc.replication, tc.minISR)
		if len(specs) != 2 || specs[0].Name != "events" || specs[1].Name != "events.dlq" || specs[1].Partitions != 1 {
			t.Fatalf("specs %+v", specs)
		}
		for _, s := range specs {
			if got := s.Configs["min.insync.replicas"]; got != tc.want || s.ReplicationFactor != tc.replication {
				t.Errorf("replication %d: %s has min.insync.replicas %q (replication %d), want %q",
					tc.replication, s.Name, got, s.ReplicationFactor, tc.want)
			}
		}
	}
}
