// Package e2e tests the distributed mode end to end: the ingest, worker,
// query and publisher binaries run as real processes against real Kafka,
// Redis and Postgres (scripts/deps.sh up), each scenario on a stack of its
// own (database, topics, consumer group and ports), some while components are
// killed, flushed or restarted. Every scenario ends with exact counts.
//
// The cmd directory holds the programs scripts/bench-distributed.sh runs.
package e2e
