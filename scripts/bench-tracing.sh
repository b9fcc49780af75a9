#!/usr/bin/env bash
# Tracing overhead of the all-in-one binary: the same publisher load with
# tracing off, sampling 1% (traceidratio 0.01) and 100% (always_on), the last
# two exporting over OTLP/HTTP to the local Jaeger (scripts/deps/jaeger.sh up).
# Runs are interleaved (each round rotates the order) so that drift of a
# shared machine hits every mode alike; each run gets a fresh data directory.
#   batched: 1,000 events/request, 20% duplicates, 8 clients, ~10 s per run
#   single:  one event per request, 32 clients, unlimited rate (SINGLE=0 skips)
# Prints each run, then per mode the median events/s and the aggregator's CPU
# time per event (steadier than throughput on a busy machine), each against off.
# Usage: scripts/bench-tracing.sh [events-per-run] [rounds]
#   events-per-run: default sized from a calibration run to last ~10 s
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-}
rounds=${2:-3}
single=${SINGLE:-1}
single_events=${SINGLE_EVENTS:-30000}
otlp=${AGGREGATOR_TEST_OTLP_ENDPOINT:-http://127.0.0.1:4318}
jaeger_api=${AGGREGATOR_TEST_JAEGER_URL:-http://127.0.0.1:16686}
addr=127.0.0.1:18090
bin=.cache/bin
modes=(off 1% 100%)

command -v jq >/dev/null || { echo "bench-tracing: needs jq (apt-get install jq)" >&2; exit 1; }
curl -fsS --max-time 3 -o /dev/null "$jaeger_api/api/services" || {
  echo "bench-tracing: Jaeger does not answer on $jaeger_api; run scripts/deps/jaeger.sh up" >&2
  exit 1
}

work=$(mktemp -d)
pid=
trap 'if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
mkdir -p "$bin"
go build -o "$bin/aggregator" ./services/aggregator
go build -o "$bin/publisher" ./services/publisher

# env_for MODE: the OTEL_* settings of a mode (none: tracing off).
env_for() {
  case $1 in
    off) ;;
    1%) echo OTEL_EXPORTER_OTLP_ENDPOINT="$otlp" OTEL_SERVICE_NAME=aggregator-bench \
      OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.01 ;;
    100%) echo OTEL_EXPORTER_OTLP_ENDPOINT="$otlp" OTEL_SERVICE_NAME=aggregator-bench \
      OTEL_TRACES_SAMPLER=always_on ;;
  esac
}

# start MODE: the aggregator on a fresh data directory; the caller's own
# OTEL_* variables are left out, so "off" is off.
start() {
  local dir
  dir=$(mktemp -d "$work/data.XXXX")
  # shellcheck disable=SC2046 # env_for's words are separate assignments
  env $(env | awk -F= '/^OTEL_/{print "-u " $1}') $(env_for "$1") \
    "$bin/aggregator" --addr "$addr" --data-dir "$dir" --log-level warn >>"$work/aggregator.log" 2>&1 &
  pid=$!
  until curl -fs "http://$addr/readyz" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { echo "aggregator exited; log:" >&2; tail -20 "$work/aggregator.log" >&2; exit 1; }
    sleep 0.01
  done
}

# stop waits for the exit, so the spans still queued are flushed before the next run.
stop() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  rm -rf "$work"/data.*
}

# publish OUT ARGS...: one publisher run against the running aggregator.
publish() {
  local out=$1
  shift
  "$bin/publisher" --url "http://$addr" --json --no-progress "$@" >"$out" || {
    echo "publisher failed:" >&2
    cat "$out" >&2
    exit 1
  }
}

batched() { # OUT EVENTS
  publish "$1" --events "$2" --duplicates 0.2 --batch 1000 --concurrency 8 --topics 10
}

tick=$(getconf CLK_TCK)
# cpu_us: CPU time (user + system) the aggregator used so far, in µs.
cpu_us() { awk -v t="$tick" '{printf "%.0f\n", ($14 + $15) * 1e6 / t}' "/proc/$pid/stat"; }

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(go version | cut -d' ' -f3)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

if [[ -z $events ]]; then
  start off
  batched "$work/calibrate.json" 300000
  stop
  rate=$(jq '.events_per_second' "$work/calibrate.json")
  # ~10 s per run, rounded to whole requests of 1,000 distinct events.
  events=$(awk -v r="$rate" 'BEGIN {n = int(r * 10 / 1.25 / 1000) * 1000; print (n < 100000) ? 100000 : n}')
  echo "calibration: $(printf '%.0f' "$rate") events/s with tracing off; $events distinct events per run"
fi

run_rounds() { # KIND
  local kind=$1 r i m out
  for ((r = 0; r < rounds; r++)); do
    for ((i = 0; i < ${#modes[@]}; i++)); do
      m=${modes[(i + r) % ${#modes[@]}]}
      out="$work/$kind-${m%\%}-$r.json"
      start "$m"
      if [[ $kind == batched ]]; then
        batched "$out" "$events"
      else
        publish "$out" --events "$single_events" --duplicates 0 --batch 1 --concurrency 32
      fi
      # Read before the stop: the exit flushes spans, a cost the run already paid.
      jq --argjson cpu "$(cpu_us)" '. + {cpu_us_per_event: ($cpu / .events_sent)}' "$out" >"$out.tmp"
      mv "$out.tmp" "$out"
      stop
      jq -r --arg k "$kind" --arg m "$m" --arg r "$((r + 1))" \
        '"\($k) round \($r) \($m): \(.events_per_second | floor) events/s, \(.cpu_us_per_event * 100 | floor / 100) µs CPU/event, p99 \(.latency_ms.p99 | floor) ms, \(.events_sent) events in \(.elapsed_seconds * 100 | floor / 100) s"' "$out"
    done
  done
}

summary() { # KIND
  local kind=$1 m base cbase med cpu f p99
  echo "== $kind: median of $rounds runs per mode"
  for m in "${modes[@]}"; do
    f=("$work/$kind-${m%\%}"-*.json)
    med=$(jq '.events_per_second' "${f[@]}" | median)
    cpu=$(jq '.cpu_us_per_event' "${f[@]}" | median)
    p99=$(jq '.latency_ms.p99' "${f[@]}" | median)
    if [[ $m == off ]]; then base=$med cbase=$cpu; fi
    awk -v m="$m" -v v="$med" -v b="$base" -v c="$cpu" -v cb="$cbase" -v p="$p99" 'BEGIN {
      printf "%-5s %9.0f events/s %+6.1f%% vs off | %7.2f µs CPU/event %+6.1f%% vs off | request p99 %.0f ms\n",
        m, v, (v / b - 1) * 100, c, (c / cb - 1) * 100, p }'
  done
}

echo "== batched: $events distinct events + 20% duplicates per run, 1,000/request, 8 clients, $rounds rounds"
run_rounds batched
if [[ $single == 1 ]]; then
  echo "== single-event: $single_events events per run, 32 clients, unlimited rate, $rounds rounds"
  run_rounds single
fi
summary batched
[[ $single == 1 ]] && summary single
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
