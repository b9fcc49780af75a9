#!/usr/bin/env bash
# Benchmarks the distributed mode with everything on this machine's cores:
#   1. end to end: the publisher against the local stack (scripts/stack.sh up,
#      N workers): 1,000 events/request, 20% duplicates, 8 clients, 20 topics.
#      The rate counts until every event is stored and counted (the publisher
#      waits for the exact counters), with the consumer lag sampled meanwhile;
#   2. in the same run, on the same Postgres: the raw INSERT … SELECT FROM
#      unnest … ON CONFLICT DO NOTHING rate and the worker's store path
#      (postgres.Store.Persist), same batch size and connections;
#   3. single events on one ingest process: closed loop with 64 clients, and
#      open loop at 2,000 and 5,000 req/s (latency from each request's
#      scheduled time), each verified end to end, with the CPU each component
#      spent per event; first with the workers consuming meanwhile, then with
#      the ingest process alone (the workers paused with SIGSTOP while the
#      publisher sends, then resumed; the stored count is then checked exactly).
# Event ids are random UUIDv4 (IDS=sequential for the publisher's ordered ids);
# each publish prints the store size at its start and the load average.
# Usage: scripts/bench-distributed.sh [events] [workers]   (default 300000 3)
# Leaves the stack running; scripts/stack.sh down stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

events=${1:-300000}
workers=${2:-3}
bin=.cache/bin
work=$(mktemp -d)
lag_pid=
cleanup() {
	if [[ -n $lag_pid ]]; then
		kill -INT "$lag_pid" 2>/dev/null || true
		wait "$lag_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
command -v jq >/dev/null || { echo "bench-distributed: needs jq (apt-get install jq)" >&2; exit 1; }

scripts/stack.sh up --workers "$workers" >/dev/null
eval "$(scripts/deps.sh env postgres redis kafka)"
export AGGREGATOR_POSTGRES_URL AGGREGATOR_KAFKA_BROKERS
go build -o "$bin/" ./test/e2e/cmd/lagwatch ./test/e2e/cmd/storebench
batch_size=${AGGREGATOR_BATCH_SIZE:-500} # the workers' batch, for the store figures
ids=${IDS:-uuid}
single=${SINGLE_EVENTS:-30000}
store_size() {
	echo "store at start: $(curl -fs http://127.0.0.1:8081/stats | jq -r .unique_processed) events;" \
		"load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# CPU accounting, to say where the time goes: each component's CPU time
# (its process and children, live or reaped, in clock ticks), found by the
# port it listens on, and the whole machine's busy time from /proc/stat.
components=(ingest:8080 query:8081 kafka:9092 postgres:5432 redis:6379)
for ((i = 1; i <= workers; i++)); do components+=("worker-$i:$((8081 + i))"); done
pid_on_port() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2; }
cpu_ticks() {
	local total=0 c t
	for c in "$1" $(pgrep -P "$1" || true); do
		t=$(sed 's/^.*) //' "/proc/$c/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 } END { if (NR == 0) print 0 }')
		total=$((total + t))
	done
	echo "$total"
}
cpu_snapshot() { # FILE
	local entry pid
	: >"$1"
	for entry in "${components[@]}"; do
		pid=$(pid_on_port "${entry#*:}")
		[[ -n $pid ]] && echo "${entry%%:*} $(cpu_ticks "$pid")" >>"$1"
	done
	echo "machine $(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat)" >>"$1"
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(go version | cut -d' ' -f3)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. End to end, with the lag sampled every 250 ms.
"$bin/lagwatch" -interval 250ms -csv "$work/lag.csv" >"$work/lag.json" &
lag_pid=$!
sleep 1
cpu_snapshot "$work/cpu.before"
launched=$(date +%s%3N)
echo "== end to end: $events events, $ids ids, 1,000/request, 20% duplicates, 8 clients, $workers workers"
store_size
publisher=("$bin/publisher")
# GNU time, when installed, reports the publisher's peak resident memory.
[[ -x /usr/bin/time ]] && publisher=(/usr/bin/time -o "$work/publisher.rss" -f %M "$bin/publisher")
"${publisher[@]}" --url http://127.0.0.1:8080 --query-url http://127.0.0.1:8081 --events "$events" \
	--duplicates 0.2 --batch 1000 --concurrency 8 --topics 20 --settle-timeout 5m --ids "$ids" \
	--json --no-progress >"$work/e2e.json" || {
	cat "$work/e2e.json" >&2
	echo "bench-distributed: the publisher run failed" >&2
	exit 1
}
finished=$(date +%s%3N)
cpu_snapshot "$work/cpu.after"
sleep 1
kill -INT "$lag_pid"
wait "$lag_pid" || true
lag_pid=
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

# 2. The store alone, on the same Postgres.
echo "== store: raw insert vs Persist, 200,000 rows, batches of $batch_size, 4 connections, best of 3"
"$bin/storebench" -rows 200000 -batch "$batch_size" -conns 4 -rounds 3 >"$work/store.json"

jq -c . "$work/e2e.json" >&2
jq -c . "$work/store.json" >&2

sent=$(jq '.events_sent' "$work/e2e.json")
distinct=$(jq '.distinct_events' "$work/e2e.json")
send_s=$(jq '.elapsed_seconds' "$work/e2e.json")
settle_s=$(jq '.verification.settle_seconds' "$work/e2e.json")
status=$(jq -r '.verification.status' "$work/e2e.json")
accept_rate=$(jq '.events_per_second' "$work/e2e.json")
p99=$(jq '.latency_ms.p99' "$work/e2e.json")
raw=$(jq '.raw_rows_per_sec' "$work/store.json")
persist=$(jq '.persist_rows_per_sec' "$work/store.json")
lag_max=$(jq '.max_lag' "$work/lag.json")
lag_last=$(jq '.last_lag' "$work/lag.json")
# The lag when the publisher stopped sending (it exited after verifying for
# settle_s): the last sample before, as the workers drain the rest quickly.
send_end=$(awk -v t="$finished" -v s="$settle_s" 'BEGIN { printf "%.0f", t - s * 1000 }')
lag_send_end=$(awk -F, -v t="$send_end" '$1 <= t { lag = $2 } END { print lag }' "$work/lag.csv")

awk -v sent="$sent" -v distinct="$distinct" -v send_s="$send_s" -v settle_s="$settle_s" \
	-v accept="$accept_rate" -v p99="$p99" -v raw="$raw" -v persist="$persist" -v status="$status" \
	-v lmax="$lag_max" -v lend="${lag_send_end:-?}" -v llast="$lag_last" -v batch="$batch_size" 'BEGIN {
	total = send_s + settle_s
	e2e = sent / total
	stored = distinct / total
	printf "\n| figure | value |\n|---|---|\n"
	printf "| end to end (sent until stored and counted, verification %s) | %.0f events/s (%d events in %.1f s) |\n", status, e2e, sent, total
	printf "| ingest accept rate (send phase), p99 per 1,000-event request | %.0f events/s, %.0f ms |\n", accept, p99
	printf "| rows stored by the workers end to end (distinct events) | %.0f rows/s |\n", stored
	printf "| raw INSERT … SELECT FROM unnest … ON CONFLICT DO NOTHING (batch %d, 4 conns) | %.0f rows/s |\n", batch, raw
	printf "| worker store path, Store.Persist (batch %d, 4 conns) | %.0f rows/s |\n", batch, persist
	printf "| Persist / raw | %.0f%% |\n", 100 * persist / raw
	printf "| end-to-end stored rows / raw | %.0f%% |\n", 100 * stored / raw
	printf "| consumer lag: max / when sending ended / after the drain | %d / %s / %d records |\n", lmax, lend, llast
}'

# Where the CPU went during the end-to-end run (publisher included in
# "machine", with whatever else this machine ran meanwhile).
echo
echo "| CPU during the end-to-end run ($(nproc) cores, $(awk -v ms=$((finished - launched)) 'BEGIN { printf "%.1f", ms / 1000 }') s) | CPU s | share of the cores |"
echo "|---|---|---|"
awk -v ms=$((finished - launched)) -v cores="$(nproc)" -v hz="$(getconf CLK_TCK)" '
NR == FNR { before[$1] = $2; next }
$1 in before {
	s = ($2 - before[$1]) / hz
	printf "| %s | %.1f | %.0f%% |\n", $1, s, 100 * s / (ms / 1000 * cores)
}' "$work/cpu.before" "$work/cpu.after"

# Peak resident memory (VmHWM: anonymous plus file-backed, since each process
# started) of every component, the servers included.
echo
echo "| peak resident memory | MiB |"
echo "|---|---|"
for entry in "${components[@]}"; do
	pid=$(pid_on_port "${entry#*:}")
	[[ -n $pid ]] && awk -v name="${entry%%:*}" '/^VmHWM/ { printf "| %s | %.0f |\n", name, $2 / 1024 }' "/proc/$pid/status"
done
[[ -f $work/publisher.rss ]] && awk '{ printf "| publisher | %.0f |\n", $1 / 1024 }' "$work/publisher.rss"

# 3. Single events on the ingest process, verified end to end, with the CPU
# per event of each component (publisher included; "machine" is every
# process of the machine, whatever else it ran).
worker_pids() {
	local i pid
	for ((i = 1; i <= workers; i++)); do
		pid=$(pid_on_port $((8081 + i)))
		[[ -n $pid ]] && echo "$pid"
	done
}
cpu_per_event() { # BEFORE AFTER EVENTS PUBLISHER_TICKS
	awk -v n="$3" -v pub="$4" -v hz="$(getconf CLK_TCK)" '
	NR == FNR { before[$1] = $2; next }
	$1 in before { us = ($2 - before[$1]) * 1e6 / hz / n; if ($1 ~ /^worker-/) w += us; else if ($1 != "machine") out = out sprintf("%s %.0f, ", $1, us); else m = us }
	END { printf "%sworkers %.0f, publisher %.0f, machine %.0f", out, w, pub * 1e6 / hz / n, m }' "$1" "$2"
}
echo
echo "| single event on ingest ($ids ids, $single events, no duplicates) | req/s | p50 ms | p99 ms | verification | CPU µs per event | load average |"
echo "|---|---|---|---|---|---|---|"
single_run() { # label, alone (0/1), publisher flags
	local label=$1 alone=$2 start status ticks
	shift 2
	store_size >&2
	start=$(curl -fs http://127.0.0.1:8081/stats | jq -r .unique_processed)
	local load
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	local verify=(--settle-timeout 5m)
	if ((alone)); then
		verify=(--no-verify)
		# shellcheck disable=SC2046 # one pid per word
		kill -STOP $(worker_pids)
	fi
	cpu_snapshot "$work/single.before"
	"$bin/publisher" --url http://127.0.0.1:8080 --query-url http://127.0.0.1:8081 --events "$single" \
		--duplicates 0 --batch 1 --ids "$ids" --json --no-progress "${verify[@]}" "$@" >"$work/single.json" &
	local pub=$!
	ticks=0
	# The publisher's own CPU, read before it is reaped.
	local t
	while kill -0 "$pub" 2>/dev/null; do
		t=$(sed 's/^.*) //' "/proc/$pub/stat" 2>/dev/null | awk '{ print $12 + $13 }')
		[[ -n $t ]] && ticks=$t
		sleep 0.2
	done
	wait "$pub" || true
	cpu_snapshot "$work/single.after"
	status=$(jq -r '.verification.status // "none"' "$work/single.json")
	if ((alone)); then
		# shellcheck disable=SC2046
		kill -CONT $(worker_pids)
		# The workers store the backlog; the count must then be exact.
		local want got deadline=$((SECONDS + 300))
		want=$((start + $(jq '.distinct_acknowledged' "$work/single.json")))
		until got=$(curl -fs http://127.0.0.1:8081/stats | jq -r .unique_processed) && ((got >= want)) || ((SECONDS > deadline)); do
			sleep 0.5
		done
		status="stored $got of $want"
		[[ $got == "$want" ]] && status="ok (exact after resuming the workers)"
	fi
	jq -r --arg l "$label" --arg s "$status" --arg c "$(cpu_per_event "$work/single.before" "$work/single.after" "$single" "$ticks")" --arg la "$load" \
		'"| \($l) | \(.requests_per_second | floor) | \(.latency_ms.p50) | \(.latency_ms.p99) | \($s) | \($c) | \($la) |"' "$work/single.json"
}
single_run "closed loop, 64 clients" 0 --concurrency 64
single_run "open loop, 2,000 req/s" 0 --open-loop --rate 2000 --concurrency 512
single_run "open loop, 5,000 req/s" 0 --open-loop --rate 5000 --concurrency 512
single_run "ingest alone: closed loop, 64 clients" 1 --concurrency 64
single_run "ingest alone: open loop, 5,000 req/s" 1 --open-loop --rate 5000 --concurrency 512
single_run "ingest alone: open loop, 10,000 req/s" 1 --open-loop --rate 10000 --concurrency 512
