#!/usr/bin/env bash
# Jaeger (v2 all-in-one, memory storage) on 127.0.0.1 for tests.
#   OTLP gRPC 127.0.0.1:4317, OTLP HTTP 127.0.0.1:4318, query API 127.0.0.1:16686 (gRPC 16685)
# Usage: scripts/deps/jaeger.sh up|start|down|stop|status
# A Jaeger already answering on 127.0.0.1:16686 is reused and never stopped by `down`.
# State (pid file, log) lives in ${AGGREGATOR_DEPS_DIR:-<repo>/.cache/deps}/jaeger.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=${AGGREGATOR_DEPS_DIR:-$repo/.cache/deps}/jaeger
pidfile=$state/jaeger.pid
logfile=$state/jaeger.log
config=$repo/scripts/deps/jaeger.yaml
api=http://127.0.0.1:16686
start_timeout=120

log() { echo "jaeger: $*" >&2; }

# The query API answers only once storage and the OTLP receivers are up, so it is the readiness signal.
answering() { curl -fsS --max-time 2 -o /dev/null "$api/api/services" 2>/dev/null; }

# Pid of the Jaeger this script started, if it is still alive (a stale pid file is ignored).
our_pid() {
  local pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse by an unrelated process.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'jaeger' || return 1
  echo "$pid"
}

up() {
  local pid bin deadline
  if answering; then
    if pid=$(our_pid); then log "running (pid $pid), API $api"; else log "reusing the Jaeger already answering on $api"; fi
    return 0
  fi
  mkdir -p "$state"
  if ! pid=$(our_pid); then
    # Build (or reuse the cached build) before starting the clock on readiness.
    bin=$("$repo/scripts/tools.sh" jaeger)
    log "starting $bin (log: $logfile)"
    # setsid: the server outlives this shell and the caller's terminal signals.
    setsid "$bin" --config "file:$config" >>"$logfile" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
  else
    log "pid $pid is starting, waiting for it"
  fi
  deadline=$((SECONDS + start_timeout))
  until answering; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "exited during start-up; last log lines:"
      tail -n 20 "$logfile" >&2 || true
      rm -f "$pidfile"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "no answer from $api/api/services after ${start_timeout}s; log: $logfile"
      return 1
    fi
    sleep 0.2
  done
  log "up (pid $pid): OTLP 127.0.0.1:4317 (gRPC), 127.0.0.1:4318 (HTTP); API $api"
}

down() {
  local pid i
  if ! pid=$(our_pid); then
    rm -f "$pidfile"
    if answering; then log "not started by this script; leaving the Jaeger on $api running"; else log "not running"; fi
    return 0
  fi
  log "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  # Give it 10 s to shut down cleanly, then force it.
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after 10s, killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "stopped"
}

# Exit status 0 when a Jaeger answers on the API port, 1 otherwise.
status() {
  local pid
  if answering; then
    if pid=$(our_pid); then log "running (pid $pid), API $api"; else log "running (not started by this script), API $api"; fi
    return 0
  fi
  if pid=$(our_pid); then log "pid $pid alive but $api not answering (starting?)"; else log "stopped"; fi
  return 1
}

case ${1:-} in
  up | start) up ;;
  down | stop) down ;;
  status) status ;;
  *) echo "usage: $0 up|start|down|stop|status" >&2; exit 2 ;;
esac
