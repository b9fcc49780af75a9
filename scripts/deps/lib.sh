# shellcheck shell=bash
# Shared functions for scripts/deps/*.sh. Source it; it defines functions and a
# few variables and runs nothing else. Every function is generic so any
# dependency script can use it.
#
# deps_main runs the verbs every dependency script has. The script sets
#   DEPS_PORT      the port its server listens on, on $DEPS_HOST
#   DEPS_URL       what up prints and status shows (URL or broker list)
#   DEPS_PEER      what a server found on the port is called ("server")
#   DEPS_OURS      what the one it starts is called ("server", "cluster")
#   DEPS_PID_FILE  its pid file, removed once ours is gone (optional)
# and defines the hooks
#   cmd_up, cmd_env  the verbs whose logic is its own
#   ours_running     true while the server it started runs
#   ours_detail      print how status describes ours ("pid 42"); fail if not ours
#   stop_ours        stop ours and wait for it to exit
#   restart_ours     optional; default: stop, then up
#   deps_prepare     optional; runs under the lock before every verb but env

# Repository root, from this file's location (scripts/deps/lib.sh).
DEPS_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Loopback only: dependencies started here are never reachable from outside.
# shellcheck disable=SC2034 # used by the scripts that source this file
DEPS_HOST=127.0.0.1
# Upper bound for every wait, in seconds.
DEPS_TIMEOUT="${AGGREGATOR_DEPS_TIMEOUT:-120}"
# Name shown in log lines; each script sets it.
DEPS_NAME="${DEPS_NAME:-deps}"

# log MSG... : progress goes to stderr so stdout stays parseable (URLs, env).
log() {
	printf '[deps:%s] %s\n' "$DEPS_NAME" "$*" >&2
}

# die MSG... : log and exit non-zero.
die() {
	log "ERROR: $*"
	exit 1
}

# log_tail FILE [LINES] : show the end of a log file on stderr after a failure.
log_tail() {
	local file=$1 lines=${2:-40}
	if [[ -s $file ]]; then
		printf '[deps:%s] ---- last %s lines of %s ----\n' "$DEPS_NAME" "$lines" "$file" >&2
		tail -n "$lines" "$file" >&2 || true
		printf '[deps:%s] ---- end of %s ----\n' "$DEPS_NAME" "$file" >&2
	fi
}

# deps_cache_dir : <repo>/.cache, for downloads kept across runs (gitignored).
deps_cache_dir() {
	mkdir -p "$DEPS_REPO_ROOT/.cache"
	printf '%s\n' "$DEPS_REPO_ROOT/.cache"
}

# deps_state_dir [NAME] : state and logs, ${AGGREGATOR_DEPS_DIR:-<repo>/.cache/deps}[/NAME].
deps_state_dir() {
	local dir="${AGGREGATOR_DEPS_DIR:-$DEPS_REPO_ROOT/.cache/deps}"
	if [[ $# -gt 0 && -n $1 ]]; then
		dir="$dir/$1"
	fi
	mkdir -p "$dir"
	# Absolute, so pid files and configs stay valid whatever the caller's cwd.
	(cd "$dir" && pwd)
}

# deps_lock FILE : serialize concurrent runs for one dependency (held until exit).
deps_lock() {
	local file=$1
	exec {DEPS_LOCK_FD}>"$file"
	if ! flock -w "$DEPS_TIMEOUT" "$DEPS_LOCK_FD"; then
		die "another run holds $file for more than ${DEPS_TIMEOUT}s"
	fi
}

# without_lock CMD... : run CMD with the lock fd closed. Servers started while
# holding the lock would otherwise inherit it and hold it for their lifetime.
without_lock() {
	if [[ -n ${DEPS_LOCK_FD:-} ]]; then
		"$@" {DEPS_LOCK_FD}>&-
	else
		"$@"
	fi
}

# tcp_open HOST PORT : true when something accepts a TCP connection there.
tcp_open() {
	local host=$1 port=$2
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

# wait_tcp HOST PORT TIMEOUT_S [PID] : wait until the port accepts connections;
# with PID, give up early when that process dies.
wait_tcp() {
	local host=$1 port=$2 timeout_s=$3 pid=${4:-}
	local deadline=$((SECONDS + timeout_s))
	while ((SECONDS < deadline)); do
		if tcp_open "$host" "$port"; then
			return 0
		fi
		if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		sleep 0.2
	done
	return 1
}

# wait_tcp_closed HOST PORT TIMEOUT_S : wait until nothing listens there.
wait_tcp_closed() {
	local host=$1 port=$2 timeout_s=$3
	local deadline=$((SECONDS + timeout_s))
	while ((SECONDS < deadline)); do
		if ! tcp_open "$host" "$port"; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# pidfile_pid PIDFILE PATTERN : print the pid recorded in PIDFILE when that
# process is alive and its command line contains PATTERN (a recycled pid that
# now belongs to something else does not count).
pidfile_pid() {
	local pidfile=$1 pattern=$2 pid
	[[ -s $pidfile ]] || return 1
	pid=$(tr -dc '0-9' <"$pidfile")
	[[ -n $pid ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern" || return 1
	printf '%s\n' "$pid"
}

# stop_pid PID TIMEOUT_S : SIGTERM, wait, then SIGKILL if it lingers.
stop_pid() {
	local pid=$1 timeout_s=$2
	local deadline=$((SECONDS + timeout_s))
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			log "pid $pid still alive after ${timeout_s}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 0.5
			break
		fi
		sleep 0.2
	done
}

# as_root CMD... : run CMD as root (directly, or through sudo when not root).
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -n "$@"
	else
		die "need root to run: $*"
	fi
}

# apt_install PKG... : install Debian packages non-interactively, output in
# <state dir>/apt.log (shown on failure). A lock keeps parallel runs of the
# dependency scripts from fighting over apt.
apt_install() {
	local lock apt_log rc=0
	lock="$(deps_cache_dir)/apt.lock"
	apt_log="$(deps_state_dir "")/apt.log"
	log "installing with apt-get: $* (log $apt_log)"
	(
		flock -w 900 9 || exit 1
		as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update &&
			as_root env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y \
				-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
				-o Dpkg::Options::=--force-confold "$@"
	) 9>"$lock" >>"$apt_log" 2>&1 || rc=$?
	if [[ $rc -ne 0 ]]; then
		log_tail "$apt_log"
		die "apt-get install $* failed (exit $rc)"
	fi
}

# deps_main VERB : the dispatcher of a dependency script; see the top of this
# file for what it expects. DEPS_USAGE_EXTRA adds the script's own verbs to
# the usage line.
deps_main() {
	local verb=${1:-}
	case $verb in
	env)
		cmd_env
		return
		;;
	up | start | down | stop | restart | status) ;;
	*)
		echo "usage: $0 up|down|restart|stop|start|status|env${DEPS_USAGE_EXTRA:-}" >&2
		exit 2
		;;
	esac
	# status only reads, so it never waits behind a slow up.
	if [[ $verb != status ]]; then
		deps_lock "$(deps_state_dir "$DEPS_NAME")/.lock"
	fi
	if declare -F deps_prepare >/dev/null; then
		deps_prepare
	fi
	case $verb in
	up | start) cmd_up ;;
	down) deps_down 0 ;;
	stop) deps_down 1 ;;
	restart) deps_restart ;;
	status) deps_status ;;
	esac
}

# deps_forget : drop the pid file of a server of ours that is gone.
deps_forget() {
	if [[ -n ${DEPS_PID_FILE:-} ]]; then
		rm -f "$DEPS_PID_FILE"
	fi
}

# deps_down STRICT : stop ours; a server someone else started is left alone.
# With STRICT=1 (stop) that, or a port still open after ours stopped, fails.
# shellcheck disable=SC2153 # DEPS_PORT is set by the dependency script
deps_down() {
	local strict=${1:-0} addr="$DEPS_HOST:$DEPS_PORT"
	if ours_running; then
		stop_ours
		deps_forget
	elif tcp_open "$DEPS_HOST" "$DEPS_PORT"; then
		if [[ $strict == 1 ]]; then
			die "the $DEPS_PEER on $addr was not started by this script; not stopping it"
		fi
		log "the $DEPS_PEER on $addr was not started by this script; leaving it running"
		return 0
	else
		deps_forget
		log "not running"
		return 0
	fi
	if ! wait_tcp_closed "$DEPS_HOST" "$DEPS_PORT" "$DEPS_TIMEOUT" && [[ $strict == 1 ]]; then
		die "$addr still answers after stopping our $DEPS_OURS"
	fi
	log "stopped"
}

# deps_restart : restart ours, start one when the port is free, and refuse to
# touch a server someone else started.
deps_restart() {
	if ours_running; then
		if declare -F restart_ours >/dev/null; then
			restart_ours
		else
			deps_down 1
			cmd_up
		fi
	elif tcp_open "$DEPS_HOST" "$DEPS_PORT"; then
		die "the $DEPS_PEER on $DEPS_HOST:$DEPS_PORT was not started by this script; cannot restart it"
	else
		cmd_up
	fi
}

# deps_status : one line on stdout; fails when nothing listens on the port.
deps_status() {
	local detail
	if detail="$(ours_detail)" && tcp_open "$DEPS_HOST" "$DEPS_PORT"; then
		printf '%s: running (started by this script, %s) %s\n' "$DEPS_NAME" "$detail" "$DEPS_URL"
	elif tcp_open "$DEPS_HOST" "$DEPS_PORT"; then
		printf '%s: running (not started by this script) %s\n' "$DEPS_NAME" "$DEPS_URL"
	else
		printf '%s: not running (%s:%s)\n' "$DEPS_NAME" "$DEPS_HOST" "$DEPS_PORT"
		return 1
	fi
}
