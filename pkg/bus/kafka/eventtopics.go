package kafka

import "strconv"

// EventTopics are the topics of the system: the events topic and its
// single-partition dead-letter topic. Replicated, both require minISR
// in-sync replicas (0: two): acks=all is otherwise met by the leader alone
// once the others fall behind, and an acknowledged record dies with it.
// Only topics created here get it: Ensure leaves an existing topic as it is.
func EventTopics(topic, dlq string, partitions, replication, minISR int) []TopicSpec {
	if minISR <= 0 && replication > 1 {
		minISR = 2
	}
	var configs map[string]string
	if minISR > 0 {
		configs = map[string]string{"min.insync.replicas": strconv.Itoa(minISR)}
	}
	return []TopicSpec{
		{Name: topic, Partitions: partitions, ReplicationFactor: replication, Configs: configs},
		{Name: dlq, Partitions: 1, ReplicationFactor: replication, Configs: configs},
	}
}
