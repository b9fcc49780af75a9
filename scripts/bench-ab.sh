#!/usr/bin/env bash
# Compares two builds of the all-in-one in the same run, interleaved
# (A B A B …), so that a shared machine's load falls on both alike:
#   batched (1,000 events/request, 20% duplicates, 8 clients) with random
#   UUIDv4 ids on an empty store, then single events open loop at 2,000 req/s
#   on the same store (right after the batched load: "single after batched")
#   and on an empty store of a fresh process ("single alone"). Each round
#   starts both from empty data directories.
# A is the git revision given (default: main; "." is the working tree, to
# compare settings of one build), B the working tree.
# Usage: scripts/bench-ab.sh [rev] [events] [rounds]   (default main 500000 2)
# Extra aggregator flags for both: AGGREGATOR_FLAGS="--store pebble" (a build
# from before Pebble was the default for a new data directory runs SQLite
# without it); for one side: FLAGS_A, FLAGS_B (FLAGS_A="--store sqlite"
# compares engines).
set -euo pipefail
cd "$(dirname "$0")/.."

rev=${1:-main}
events=${2:-500000}
rounds=${3:-2}
single=${SINGLE_EVENTS:-20000}
read -r -a extra <<<"${AGGREGATOR_FLAGS:-}"
read -r -a extra_a <<<"${FLAGS_A:-}"
read -r -a extra_b <<<"${FLAGS_B:-}"
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
command -v jq >/dev/null || { echo "bench-ab: needs jq" >&2; exit 1; }

go build -o "$work/aggregator-b" ./services/aggregator
if [[ $rev == . ]]; then
  cp "$work/aggregator-b" "$work/aggregator-a"
else
  mkdir -p "$work/a"
  git archive "$rev" | tar -x -C "$work/a"
  (cd "$work/a" && go build -o "$work/aggregator-a" ./services/aggregator)
fi
go build -o "$work/publisher" ./services/publisher

addr=127.0.0.1:18081
single_open() {
  "$work/publisher" --url "http://$addr" --json --no-progress --ids uuid --events "$single" \
    --duplicates 0 --batch 1 --open-loop --rate 2000 --concurrency 256
}
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
run_one() { # label binary, then that side's flags
  local dir=$work/data-$1-$round label=$1 bin=$2
  shift 2
  local flags=("${extra[@]}" "$@")
  "$bin" --addr "$addr" --data-dir "$dir" --log-level warn "${flags[@]}" &
  pid=$!
  until curl -fs "http://$addr/readyz" >/dev/null 2>&1; do sleep 0.005; done
  local load t0 t1
  load=$(cut -d' ' -f1 /proc/loadavg)
  t0=$(ticks "$pid")
  "$work/publisher" --url "http://$addr" --json --no-progress --ids uuid --events "$events" \
    --duplicates 0.2 --batch 1000 --concurrency 8 --topics 10 >"$work/batched.json"
  t1=$(ticks "$pid")
  single_open >"$work/single.json"
  local hwm
  hwm=$(awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$pid/status")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  "$bin" --addr "$addr" --data-dir "$dir-single" --log-level warn "${flags[@]}" &
  pid=$!
  until curl -fs "http://$addr/readyz" >/dev/null 2>&1; do sleep 0.005; done
  single_open >"$work/alone.json"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  jq -r --arg l "$label${*:+ ($*)}" --arg r "$round" --arg load "$load" --arg hwm "$hwm" \
    --arg cpu "$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$events" 'BEGIN { printf "%.1f", t / hz * 1e6 / (n * 1.25) }')" \
    --slurpfile s "$work/single.json" --slurpfile a "$work/alone.json" \
    '"| \($r) | \($l) | \($load) | \(.events_per_second | floor) | \($cpu) | \(.latency_ms.p99 | floor) | \(.verification.status) | \($s[0].latency_ms.p50 * 100 | round / 100) / \($s[0].latency_ms.p99 * 10 | round / 10) | \($a[0].latency_ms.p50 * 100 | round / 100) / \($a[0].latency_ms.p99 * 10 | round / 10) | \($s[0].verification.status), \($a[0].verification.status) | \($hwm) |"' \
    "$work/batched.json"
}

echo "machine: $(nproc) cores, $(uname -r), $(go version | cut -d' ' -f3); A = $rev, B = working tree ($(git rev-parse --short HEAD)$(git diff --quiet || echo +changes))"
echo "| round | build | load | batched events/s | aggregator CPU µs/event | batched p99 ms | verify | single after batched p50 / p99 ms | single alone p50 / p99 ms | verify | peak RSS MiB (batched) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for ((round = 1; round <= rounds; round++)); do
  for x in a b; do
    if [[ $x == a ]]; then run_one A "$work/aggregator-a" "${extra_a[@]}"; else run_one B "$work/aggregator-b" "${extra_b[@]}"; fi
  done
done
