#!/usr/bin/env bash
# Benchmarks the all-in-one binary with the publisher, on this machine:
#   1. batched publish: 1,000 events/request, 20% duplicates, 8 clients, with
#      random UUIDv4 ids and with the publisher's ordered ids at the default
#      memory settings, and random ids at large caches (the old defaults);
#   2. single-event publish with random ids: open loop at 2,000 req/s (latency
#      from each request's scheduled time), closed loop paced at 2,000 req/s
#      by 32 clients, and closed loop unlimited;
#   3. a store of many events (5 M by default, random ids) filled at the
#      default settings; once the aggregator is idle again (its background
#      work on the fill done), batched (random and ordered ids) and
#      single-event open loop on top of it, then restart to ready.
# Batched with random ids runs ROUNDS times (3 by default) on a new store and
# as many times on the stored events (the first round on top of 5 M, the
# next on 6 M, ...): a run of a million events lasts a few seconds, and one
# such run moves by 10-20% from one to the next on this shared machine. Each
# of these rounds starts on an idle aggregator and is followed by its
# background work (compactions of what it wrote) until idle again, so no
# round pays for another's, and a round's CPU counts both. The last line
# compares the medians: how much slower, and how much more CPU, with the
# events stored.
# Every publish prints the store size at its start (events and MiB on disk),
# the load average and the aggregator's CPU time it took; every phase
# reports the aggregator's peak resident memory (VmHWM: anonymous plus
# file-backed) and its resident memory at the end; the publisher's peak
# comes from GNU time when installed.
# Usage: scripts/bench-aggregator.sh [events] [stored-for-restart]
# AGGREGATOR_BIN benchmarks another aggregator build (to compare two, run the
# script once with each, or see scripts/bench-ab.sh). STORE names the engine:
# pebble (the default, what the aggregator picks for a new data directory;
# its large-cache phase uses --pebble-cache-mb 512) or sqlite.
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-1000000}
stored=${2:-5000000}
single=${SINGLE_EVENTS:-40000}
rounds=${ROUNDS:-3}
bin=${BIN_DIR:-.cache/bin} # BIN_DIR builds elsewhere
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$bin"
aggregator=${AGGREGATOR_BIN:-}
if [[ -z $aggregator ]]; then
  go build -o "$bin/aggregator" ./services/aggregator
  aggregator=$bin/aggregator
fi
go build -o "$bin/publisher" ./services/publisher

addr=127.0.0.1:18080
store=${STORE:-pebble}
large=(--sqlite-cache-mb 256 --sqlite-mmap-mb 1024 --claim-cache-keys 1048576)
[[ $store == pebble ]] && large=(--pebble-cache-mb 512 --claim-cache-keys 1048576)
dir=
start() { # data dir, then extra flags
  dir=$1
  shift
  "$aggregator" --addr "$addr" --data-dir "$dir" --log-level warn --store "$store" "$@" &
  pid=$!
  until curl -fs "http://$addr/readyz" >/dev/null 2>&1; do sleep 0.005; done
}
# memory: the aggregator's peak and current resident set, in MiB.
memory() {
  awk '/^VmHWM|^VmRSS|^RssAnon|^RssFile/ {printf "%s %d MiB  ", $1, $2/1024} END {print ""}' "/proc/$pid/status"
}
stop() { echo "aggregator memory: $(memory)"; kill "$pid"; wait "$pid" 2>/dev/null || true; }
# store: what the aggregator holds as a publish starts.
store() {
  echo "store at start: $(curl -fs "http://$addr/stats" | jq -r .unique_processed) events," \
    "$(du -sm "$dir" | cut -f1) MiB on disk; load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
# cpu: the aggregator's CPU time so far, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
publish() { # publisher flags
  store
  local c0 time=()
  c0=$(cpu)
  [[ -x /usr/bin/time ]] && time=(/usr/bin/time -f "publisher peak RSS: %M KiB")
  "${time[@]}" "$bin/publisher" --url "http://$addr" --json --no-progress "$@" | tee "$work/last.json"
  # Less sensitive than a rate to what else the machine runs meanwhile.
  echo "$(jq -r .events_per_second "$work/last.json") $(echo "scale=2; ($(cpu) - $c0) / $(getconf CLK_TCK)" | bc)" >"$work/last"
  echo "aggregator CPU: $(cut -d' ' -f2 "$work/last") s"
}
# round publishes a batched round with random ids, waits for the aggregator
# to be idle again and keeps, under a name, the rate and the CPU time of the
# publish and of the work it left behind.
round() {
  publish "${batched[@]}" --ids uuid
  settle
  echo "$(cut -d' ' -f1 "$work/last") $(echo "$(cut -d' ' -f2 "$work/last") + $(cat "$work/settled")" | bc)" >>"$work/$1"
}
# median of column $2 of file $1.
median() {
  cut -d' ' -f"$2" "$1" | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
# settle waits until the aggregator is idle (under 5% of a core for 2 s, at
# most 2 minutes): the next phase measures a store holding the events, not
# one still compacting or checkpointing what the fill just wrote. It prints
# the wait and the aggregator's CPU time meanwhile, and keeps that time.
settle() {
  local tick t0 c0 a b
  tick=$(getconf CLK_TCK)
  t0=$(date +%s)
  c0=$(cpu)
  b=$c0
  while (($(date +%s) - t0 < 120)); do
    a=$b
    sleep 2
    b=$(cpu)
    (((b - a) * 100 < 2 * tick * 5)) && break
  done
  echo "scale=2; ($b - $c0) / $tick" | bc >"$work/settled"
  echo "settled after $(($(date +%s) - t0)) s (aggregator CPU meanwhile: $(cat "$work/settled") s)"
}
batched=(--events "$events" --duplicates 0.2 --batch 1000 --concurrency 8 --topics 10)
open_loop=(--events "$single" --duplicates 0 --batch 1 --ids uuid --open-loop --rate 2000 --concurrency 256)

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(go version | cut -d' ' -f3)"
echo "aggregator: $aggregator, --store $store"

for ((i = 1; i <= rounds; i++)); do
  start "$work/batched-uuid-$i"
  echo "== batched, uuid ids (memory settings: default), round $i of $rounds: $events events, 1,000/request, 20% duplicates, 8 clients"
  round fresh
  stop
done
for mode in sequential large; do
  flags=()
  ids=$mode
  [[ $mode == large ]] && flags=("${large[@]}") && ids=uuid
  start "$work/batched-$mode" "${flags[@]}"
  echo "== batched, $ids ids (memory settings: ${flags[*]:-default}): $events events, 1,000/request, 20% duplicates, 8 clients"
  publish "${batched[@]}" --ids "$ids"
  stop
done

start "$work/single"
echo "== single-event, uuid ids, open loop: $single events at 2,000 req/s (latency from the scheduled time), up to 256 in flight"
publish "${open_loop[@]}"
echo "== single-event, uuid ids, closed loop: $single events, 32 clients, paced at 2,000 req/s"
publish --events "$single" --duplicates 0 --batch 1 --ids uuid --concurrency 32 --rate 2000
echo "== single-event, uuid ids, closed loop: $single events, 32 clients, unlimited rate"
publish --events "$single" --duplicates 0 --batch 1 --ids uuid --concurrency 32
stop

echo "== $stored events stored (uuid ids) at the default settings, then restart to ready"
start "$work/restart"
publish --events "$stored" --duplicates 0.2 --batch 1000 --concurrency 8 --ids uuid --no-verify >/dev/null
settle
for ((i = 1; i <= rounds; i++)); do
  echo "== batched on top of the stored events, uuid ids, round $i of $rounds: $events events"
  round stored
done
echo "== batched on top of the stored events, sequential ids: $events events"
publish "${batched[@]}" --ids sequential
echo "== single-event on top of the stored events, uuid ids, open loop at 2,000 req/s"
publish "${open_loop[@]}"
stop
for i in 1 2 3; do
  t0=$(date +%s.%N)
  start "$work/restart"
  t1=$(date +%s.%N)
  echo "restart $i: $(echo "$t1 - $t0" | bc) s to ready"
  stop
done
fresh=$(printf %.0f "$(median "$work/fresh" 1)") full=$(printf %.0f "$(median "$work/stored" 1)")
cpu0=$(median "$work/fresh" 2) cpu1=$(median "$work/stored" 2)
echo "== batched, uuid ids, median of $rounds rounds: $fresh events/s on a new store, $full with $stored and more" \
  "stored: $(echo "scale=1; 100 * ($fresh - $full) / $fresh" | bc)% slower; aggregator CPU a round (with its" \
  "background work) $cpu0 s and" \
  "$cpu1 s: $(echo "scale=1; 100 * ($cpu1 - $cpu0) / $cpu0" | bc)% more"
