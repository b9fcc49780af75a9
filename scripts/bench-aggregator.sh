#!/usr/bin/env bash
# Benchmarks the all-in-one binary with the publisher, on this machine:
#   1. batched publish: 1,000 events/request, 20% duplicates, 8 clients;
#   2. single-event publish: 32 clients at a target rate;
#   3. restart to ready with many events stored.
# Usage: scripts/bench-aggregator.sh [events] [stored-for-restart]
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-1000000}
stored=${2:-5000000}
bin=.cache/bin
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$bin"
go build -o "$bin/aggregator" ./services/aggregator
go build -o "$bin/publisher" ./services/publisher

addr=127.0.0.1:18080
start() { # data dir
  "$bin/aggregator" --addr "$addr" --data-dir "$1" --log-level warn &
  pid=$!
  until curl -fs "http://$addr/readyz" >/dev/null 2>&1; do sleep 0.005; done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(go version | cut -d' ' -f3)"

start "$work/batched"
echo "== batched: $events events, 1,000/request, 20% duplicates, 8 clients"
"$bin/publisher" --url "http://$addr" --events "$events" --duplicates 0.2 --batch 1000 \
  --concurrency 8 --topics 10 --json --no-progress | tee "$work/batched.json"
stop

start "$work/single"
echo "== single-event: 40,000 events, 32 clients, target 2,000 req/s"
"$bin/publisher" --url "http://$addr" --events 40000 --duplicates 0 --batch 1 \
  --concurrency 32 --rate 2000 --json --no-progress | tee "$work/single.json"
echo "== single-event: 40,000 events, 32 clients, unlimited rate"
"$bin/publisher" --url "http://$addr" --events 40000 --duplicates 0 --batch 1 \
  --concurrency 32 --json --no-progress | tee "$work/single-max.json"
stop

echo "== restart to ready with $stored events stored"
start "$work/restart"
"$bin/publisher" --url "http://$addr" --events "$stored" --duplicates 0 --batch 5000 \
  --concurrency 4 --no-verify --json --no-progress >/dev/null
echo "stored: $(curl -fs "http://$addr/stats" | jq -c '{unique_processed, received}')"
stop
for i in 1 2 3; do
  t0=$(date +%s.%N)
  start "$work/restart"
  t1=$(date +%s.%N)
  echo "restart $i: $(echo "$t1 - $t0" | bc) s to ready"
  stop
done
