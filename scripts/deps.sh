#!/usr/bin/env bash
# Start, stop and inspect the real dependencies tests use, on 127.0.0.1.
#
#   scripts/deps.sh up|down|status|restart|stop|start [name...]
#   eval "$(scripts/deps.sh env)"     # AGGREGATOR_POSTGRES_URL, _REDIS_URL, _KAFKA_BROKERS
#                                     # (and AGGREGATOR_TEST_KUBECONFIG from k8s)
#
# Names default to: postgres redis kafka (and jaeger, k8s when scripts/deps/jaeger.sh,
# scripts/deps/k8s.sh exist). Each name is handled by scripts/deps/<name>.sh <verb>. A dependency
# already reachable at its address is reused and never stopped; state and logs
# live in ${AGGREGATOR_DEPS_DIR:-<repo>/.cache/deps}.
set -euo pipefail

DEPS_NAME=deps
# shellcheck source=scripts/deps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/deps/lib.sh"
SCRIPTS_DIR="$DEPS_REPO_ROOT/scripts/deps"

usage() {
	echo "usage: $0 up|down|status|restart|stop|start|env [name...]" >&2
	exit 2
}

default_names() {
	local names=(postgres redis kafka)
	if [[ -f $SCRIPTS_DIR/jaeger.sh ]]; then
		names+=(jaeger)
	fi
	if [[ -f $SCRIPTS_DIR/k8s.sh ]]; then
		names+=(k8s)
	fi
	printf '%s\n' "${names[@]}"
}

# check_names NAME... : fail early, in this shell, on a name with no script.
check_names() {
	local name
	for name in "$@"; do
		[[ $name =~ ^[a-z0-9-]+$ && $name != lib && -f $SCRIPTS_DIR/$name.sh ]] ||
			die "unknown dependency '$name' (known: $(default_names | paste -sd ' '))"
	done
}

script_for() {
	printf '%s\n' "$SCRIPTS_DIR/$1.sh"
}

# up_all VERB NAME... : start dependencies in parallel (downloads, installs and
# JVM start-up overlap; the scripts serialize apt themselves). Progress lines
# (stderr, each prefixed with its dependency) stream as they come; the
# addresses (stdout) are printed afterwards in the order of the names.
# Fails if any failed.
up_all() {
	local verb=$1
	shift
	if [[ $# -eq 1 ]]; then
		bash "$(script_for "$1")" "$verb"
		return
	fi
	local tmp name failed=() pids=() rc
	tmp="$(mktemp -d)"
	DEPS_TMP="$tmp"
	trap 'rm -rf "$DEPS_TMP"' EXIT
	for name in "$@"; do
		bash "$(script_for "$name")" "$verb" >"$tmp/$name.out" &
		pids+=("$!")
	done
	local i=0
	for name in "$@"; do
		rc=0
		wait "${pids[$i]}" || rc=$?
		i=$((i + 1))
		cat "$tmp/$name.out"
		if [[ $rc -ne 0 ]]; then
			failed+=("$name")
		fi
	done
	if [[ ${#failed[@]} -gt 0 ]]; then
		die "failed to start: ${failed[*]}"
	fi
}

# down_all VERB NAME... : stop in reverse order of start.
down_all() {
	local verb=$1 rc=0 i
	shift
	local names=("$@")
	for ((i = ${#names[@]} - 1; i >= 0; i--)); do
		bash "$(script_for "${names[$i]}")" "$verb" || rc=1
	done
	return "$rc"
}

# restart_all NAME... : a dependency script without its own restart gets down + up.
restart_all() {
	local name script rc err
	err="$(mktemp)"
	DEPS_TMP="$err"
	trap 'rm -rf "$DEPS_TMP"' EXIT
	for name in "$@"; do
		script="$(script_for "$name")"
		rc=0
		bash "$script" restart 2>"$err" || rc=$?
		if [[ $rc -eq 2 ]] && grep -q '^usage:' "$err"; then
			bash "$script" down
			bash "$script" up
			continue
		fi
		cat "$err" >&2
		if [[ $rc -ne 0 ]]; then
			die "restart of $name failed (exit $rc)"
		fi
	done
}

status_all() {
	local name rc=0
	for name in "$@"; do
		bash "$(script_for "$name")" status || rc=1
	done
	return "$rc"
}

# env_all NAME... : export lines; dependencies without an env verb add nothing.
env_all() {
	local name out rc
	for name in "$@"; do
		rc=0
		out="$(bash "$(script_for "$name")" env 2>/dev/null)" || rc=$?
		if [[ $rc -eq 0 ]]; then
			[[ -z $out ]] || printf '%s\n' "$out"
		elif [[ $rc -ne 2 ]]; then
			log "warning: $name env failed (exit $rc)"
		fi
	done
}

main() {
	[[ $# -ge 1 ]] || usage
	local verb=$1
	shift
	case $verb in
	up | start | down | stop | restart | status | env) ;;
	*) usage ;;
	esac
	local names=("$@")
	if [[ ${#names[@]} -eq 0 ]]; then
		mapfile -t names < <(default_names)
	fi
	check_names "${names[@]}"
	case $verb in
	up | start) up_all "$verb" "${names[@]}" ;;
	down | stop) down_all "$verb" "${names[@]}" ;;
	restart) restart_all "${names[@]}" ;;
	status) status_all "${names[@]}" ;;
	env) env_all "${names[@]}" ;;
	*) usage ;;
	esac
}

main "$@"
