// Package testdeps gives tests the real dependencies the README's test command
// starts (scripts/deps.sh): Postgres, Redis, Kafka and Jaeger on 127.0.0.1, or
// wherever the AGGREGATOR_TEST_* variables point. A dependency that cannot be
// reached fails the test; it never skips, so CI cannot pass without it.
package testdeps
