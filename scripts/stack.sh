#!/usr/bin/env bash
# The distributed stack on this machine, for trying it out and for benchmarks.
#
#   scripts/stack.sh up [--workers N] [--jaeger]   start what is not running yet
#   scripts/stack.sh down [--deps]                 stop the services (--deps: the dependencies too)
#   scripts/stack.sh status                        what runs where
#
# up starts Postgres, Redis and Kafka with scripts/deps.sh (reusing servers
# already reachable), builds ingest, worker, query and publisher into
# .cache/bin, applies the schema (worker migrate), then runs ingest on
# 127.0.0.1:8080, query on :8081 and N workers (default 3) on :8082, :8083, …
# and waits for each /readyz. --jaeger also starts Jaeger and sends traces to
# it. Running up again starts only what is missing and stops workers beyond N.
# Pid files and logs live in .cache/stack. Ports: AGGREGATOR_STACK_PORT (first
# of the range, default 8080); host: AGGREGATOR_STACK_HOST (default 127.0.0.1).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bin_dir="$root/.cache/bin"
state="$root/.cache/stack"
host="${AGGREGATOR_STACK_HOST:-127.0.0.1}"
base_port="${AGGREGATOR_STACK_PORT:-8080}"
ready_timeout=60

log() { printf '[stack] %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

usage() {
	sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# pid_of NAME : the pid of a service this script started, when it is alive
# and still runs our binary (a recycled pid does not count).
pid_of() {
	local file="$state/$1.pid" pid
	[[ -s $file ]] || return 1
	pid="$(tr -dc '0-9' <"$file")"
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$bin_dir/" || return 1
	printf '%s\n' "$pid"
}

# port_of NAME : ingest, query, worker-1, worker-2, … take consecutive ports.
port_of() {
	case $1 in
	ingest) echo "$base_port" ;;
	query) echo $((base_port + 1)) ;;
	worker-*) echo $((base_port + 1 + ${1#worker-})) ;;
	*) die "unknown service $1" ;;
	esac
}

ready() { curl -fsS --max-time 2 -o /dev/null "http://$host:$(port_of "$1")/readyz" 2>/dev/null; }

# start NAME BINARY : run a service in its own session, so it outlives this
# shell; its output is appended to .cache/stack/NAME.log.
start() {
	local name=$1 binary=$2 pid
	if pid="$(pid_of "$name")"; then
		log "$name already running (pid $pid)"
		return 0
	fi
	if curl -s --max-time 1 -o /dev/null "http://$host:$(port_of "$name")/healthz" 2>/dev/null; then
		die "$host:$(port_of "$name") is taken by something this script did not start (set AGGREGATOR_STACK_PORT)"
	fi
	printf -- '---- %s started %s ----\n' "$name" "$(date -Is)" >>"$state/$name.log"
	AGGREGATOR_ADDR="$host:$(port_of "$name")" setsid "$bin_dir/$binary" </dev/null >>"$state/$name.log" 2>&1 &
	echo $! >"$state/$name.pid"
	log "started $name (pid $!) on $host:$(port_of "$name")"
}

# wait_ready NAME : bounded; a service that exits shows its log.
wait_ready() {
	local name=$1 deadline=$((SECONDS + ready_timeout))
	until ready "$name"; do
		if ! pid_of "$name" >/dev/null; then
			tail -n 20 "$state/$name.log" >&2 || true
			die "$name exited before it was ready (log: $state/$name.log)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 20 "$state/$name.log" >&2 || true
			die "$name not ready after ${ready_timeout}s (log: $state/$name.log)"
		fi
		sleep 0.2
	done
}

# stop NAME : SIGTERM (the services drain and flush), SIGKILL after 30 s.
stop() {
	local name=$1 pid deadline
	if pid="$(pid_of "$name")"; then
		kill -TERM "$pid" 2>/dev/null || true
		deadline=$((SECONDS + 30))
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				log "$name (pid $pid) still running after 30s; killing it"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.2
		done
		log "stopped $name"
	fi
	rm -f "$state/$name.pid"
}

# workers_running : names of the workers with a pid file, in order.
workers_running() {
	local f
	for f in "$state"/worker-*.pid; do
		[[ -e $f ]] || continue
		basename "$f" .pid
	done | sort -t- -k2 -n
}

# build : into a temporary directory, then renamed into place, so a running
# service keeps its binary.
build() {
	local tmp
	mkdir -p "$bin_dir"
	tmp="$(mktemp -d "$bin_dir/.build.XXXXXX")"
	log "building ingest, worker, query and publisher into $bin_dir"
	if ! go build -o "$tmp/" ./services/ingest ./services/worker ./services/query ./services/publisher; then
		rm -rf "$tmp"
		die "build failed"
	fi
	mv -f "$tmp"/ingest "$tmp"/worker "$tmp"/query "$tmp"/publisher "$bin_dir/"
	rm -rf "$tmp"
}

cmd_up() {
	local workers=3 jaeger=0 deps=(postgres redis kafka) i name
	while [[ $# -gt 0 ]]; do
		case $1 in
		--workers)
			[[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--workers wants a positive number"
			workers=$2
			shift 2
			;;
		--workers=*)
			workers=${1#--workers=}
			[[ $workers =~ ^[1-9][0-9]*$ ]] || die "--workers wants a positive number"
			shift
			;;
		--jaeger)
			jaeger=1
			shift
			;;
		*) usage ;;
		esac
	done
	if ((jaeger)); then
		deps+=(jaeger)
	fi
	mkdir -p "$state"

	bash scripts/deps.sh up "${deps[@]}" >/dev/null
	eval "$(bash scripts/deps.sh env postgres redis kafka)"
	export AGGREGATOR_POSTGRES_URL AGGREGATOR_REDIS_URL AGGREGATOR_KAFKA_BROKERS
	if ((jaeger)); then
		export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
	fi
	build
	log "applying the schema"
	"$bin_dir/worker" migrate >>"$state/migrate.log" 2>&1 || {
		tail -n 20 "$state/migrate.log" >&2
		die "worker migrate failed (log: $state/migrate.log)"
	}

	# Workers beyond N leave first, so the group rebalances once.
	for name in $(workers_running); do
		if ((${name#worker-} > workers)); then
			stop "$name"
		fi
	done
	start ingest ingest
	start query query
	for ((i = 1; i <= workers; i++)); do
		start "worker-$i" worker
	done
	wait_ready ingest
	wait_ready query
	for ((i = 1; i <= workers; i++)); do
		wait_ready "worker-$i"
	done

	cat <<EOF

The stack is up (logs and pid files in $state):
  ingest   http://$host:$(port_of ingest)    POST /publish
  query    http://$host:$(port_of query)    GET /events, /stats, /topics
  workers  $workers, probes and /metrics on ports $(port_of worker-1)..$(port_of "worker-$workers")
  postgres $AGGREGATOR_POSTGRES_URL
  redis    $AGGREGATOR_REDIS_URL
  kafka    $AGGREGATOR_KAFKA_BROKERS (topic events, dead letters events.dlq)$(if ((jaeger)); then printf '\n  jaeger   http://127.0.0.1:16686'; fi)

Publish one event, then read it back:
  curl -sS -X POST http://$host:$(port_of ingest)/publish -H 'Content-Type: application/json' \\
    -d '{"topic":"orders","event_id":"e-1","timestamp":"2026-11-25T10:00:00Z","source":"shop-1","payload":{"total":42}}'
  curl -sS http://$host:$(port_of query)/stats
  curl -sS 'http://$host:$(port_of query)/events?topic=orders'
Load it (100,000 events, 20% duplicates, checked against /stats):
  $bin_dir/publisher --url http://$host:$(port_of ingest) --query-url http://$host:$(port_of query) --events 100000 --batch 1000
Stop it: scripts/stack.sh down   (add --deps to stop Postgres, Redis and Kafka too)
EOF
}

cmd_down() {
	local with_deps=0 name
	case ${1:-} in
	--deps) with_deps=1 ;;
	"") ;;
	*) usage ;;
	esac
	mkdir -p "$state"
	# Ingest first (no new events), then the workers drain, then query.
	stop ingest
	for name in $(workers_running); do
		stop "$name"
	done
	stop query
	if ((with_deps)); then
		bash scripts/deps.sh down
	fi
}

cmd_status() {
	local name pid rc=0
	mkdir -p "$state"
	for name in ingest query $(workers_running); do
		if pid="$(pid_of "$name")"; then
			if ready "$name"; then
				printf '%-10s ready    pid %-7s http://%s:%s\n' "$name" "$pid" "$host" "$(port_of "$name")"
			else
				printf '%-10s running  pid %-7s http://%s:%s (not ready)\n' "$name" "$pid" "$host" "$(port_of "$name")"
				rc=1
			fi
		else
			printf '%-10s stopped\n' "$name"
			rc=1
		fi
	done
	bash scripts/deps.sh status postgres redis kafka || rc=1
	return "$rc"
}

case ${1:-} in
up)
	shift
	cmd_up "$@"
	;;
down)
	shift
	cmd_down "$@"
	;;
status)
	shift
	cmd_status "$@"
	;;
*) usage ;;
esac
