#!/usr/bin/env bash
# Benchmarks the all-in-one binary with the publisher, on this machine:
#   1. batched publish: 1,000 events/request, 20% duplicates, 8 clients, at the
#      default memory settings and at large caches (the old defaults), same run;
#   2. single-event publish: 32 clients at a target rate, and unlimited;
#   3. a store of many events (5 M by default) filled at the default settings,
#      then restart to ready.
# Every phase reports the aggregator's peak resident memory (VmHWM: anonymous
# plus file-backed) and its resident memory at the end; the publisher's peak
# comes from GNU time when installed.
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
large=(--sqlite-cache-mb 256 --sqlite-mmap-mb 1024 --claim-cache-keys 1048576)
start() { # data dir, then extra flags
  local dir=$1
  shift
  "$bin/aggregator" --addr "$addr" --data-dir "$dir" --log-level warn "$@" &
  pid=$!
  until curl -fs "http://$addr/readyz" >/dev/null 2>&1; do sleep 0.005; done
}
# memory: the aggregator's peak and current resident set, in MiB.
memory() {
  awk '/^VmHWM|^VmRSS|^RssAnon|^RssFile/ {printf "%s %d MiB  ", $1, $2/1024} END {print ""}' "/proc/$pid/status"
}
stop() { echo "aggregator memory: $(memory)"; kill "$pid"; wait "$pid" 2>/dev/null || true; }
publish() { # publisher flags
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -f "publisher peak RSS: %M KiB" "$bin/publisher" --url "http://$addr" --json --no-progress "$@"
  else
    "$bin/publisher" --url "http://$addr" --json --no-progress "$@"
  fi
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(go version | cut -d' ' -f3)"

for mode in default large; do
  flags=()
  [[ $mode == large ]] && flags=("${large[@]}")
  start "$work/batched-$mode" "${flags[@]}"
  echo "== batched ($mode memory settings ${flags[*]}): $events events, 1,000/request, 20% duplicates, 8 clients"
  publish --events "$events" --duplicates 0.2 --batch 1000 --concurrency 8 --topics 10
  stop
done

start "$work/single"
echo "== single-event: 40,000 events, 32 clients, target 2,000 req/s"
publish --events 40000 --duplicates 0 --batch 1 --concurrency 32 --rate 2000
echo "== single-event: 40,000 events, 32 clients, unlimited rate"
publish --events 40000 --duplicates 0 --batch 1 --concurrency 32
stop

echo "== $stored events stored at the default settings, then restart to ready"
start "$work/restart"
publish --events "$stored" --duplicates 0.2 --batch 1000 --concurrency 8 --no-verify >/dev/null
echo "stored: $(curl -fs "http://$addr/stats" | jq -c '{unique_processed, received}')"
echo "== batched on top of the $stored stored: $events events"
publish --events "$events" --duplicates 0.2 --batch 1000 --concurrency 8 --topics 10
stop
for i in 1 2 3; do
  t0=$(date +%s.%N)
  start "$work/restart"
  t1=$(date +%s.%N)
  echo "restart $i: $(echo "$t1 - $t0" | bc) s to ready"
  stop
done
