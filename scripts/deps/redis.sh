#!/usr/bin/env bash
# Redis on 127.0.0.1:${AGGREGATOR_REDIS_PORT:-6379} for tests and local use.
#
#   scripts/deps/redis.sh up|down|restart|stop|start|status|env
#
# up reuses a server already listening on the port; otherwise it installs
# Debian's redis-server when missing and runs its own, daemonized, bound to
# 127.0.0.1, with no persistence. down/stop/restart only act on a server this
# script started (pid file in the state dir).
#
# Ours also serves TLS on ${AGGREGATOR_REDIS_TLS_PORT:-6380} (Debian's
# redis-server is built with TLS), with a certificate for 127.0.0.1 and
# localhost signed by a private CA generated under the state dir; clients are
# not asked for a certificate. env prints, besides the plain URL,
# AGGREGATOR_TEST_REDIS_TLS_URL (rediss://) and AGGREGATOR_TEST_REDIS_TLS_CA_FILE.
set -euo pipefail

DEPS_NAME=redis
# shellcheck source=scripts/deps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/deps/certs.sh
source "$(dirname "${BASH_SOURCE[0]}")/certs.sh"

REDIS_PORT="${AGGREGATOR_REDIS_PORT:-6379}"
REDIS_URL="redis://$DEPS_HOST:$REDIS_PORT/0"
REDIS_TLS_PORT="${AGGREGATOR_REDIS_TLS_PORT:-6380}"
REDIS_TLS_URL="rediss://$DEPS_HOST:$REDIS_TLS_PORT/0"

STATE_DIR="$(deps_state_dir redis)"
PID_FILE="$STATE_DIR/redis.pid"
LOG_FILE="$STATE_DIR/redis.log"
TLS_DIR="$STATE_DIR/tls"

# For deps_main (lib.sh).
DEPS_PORT="$REDIS_PORT"
DEPS_URL="$REDIS_URL"
DEPS_PEER=server
DEPS_OURS=server
DEPS_PID_FILE="$PID_FILE"

# ours_pid : pid of the server this script started, if it is alive.
ours_pid() {
	pidfile_pid "$PID_FILE" "redis-server"
}

redis_ping() {
	[[ "$(timeout 5 redis-cli -h "$DEPS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

# redis_tls_ping : PING over TLS, verifying the server against our CA.
redis_tls_ping() {
	[[ "$(timeout 5 redis-cli --tls --cacert "$TLS_DIR/ca.pem" -h "$DEPS_HOST" -p "$REDIS_TLS_PORT" ping 2>/dev/null)" == PONG ]]
}

install_server() {
	apt_install redis-server
	# The package starts its own service on 6379. Stop it and keep it from
	# starting again, so the port is ours and stop/start really stop/start
	# the server tests talk to.
	log "stopping and disabling the packaged redis-server service"
	if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
		as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
	fi
	if [[ -x /etc/init.d/redis-server ]]; then
		as_root /etc/init.d/redis-server stop >/dev/null 2>&1 || true
		if command -v update-rc.d >/dev/null 2>&1; then
			as_root update-rc.d redis-server disable >/dev/null 2>&1 || true
		fi
	fi
	# Without an init system the service may survive the above: end it by its pid file.
	local pid
	if pid="$(pidfile_pid /run/redis/redis-server.pid redis-server)"; then
		as_root kill -TERM "$pid" || true
	fi
	wait_tcp_closed "$DEPS_HOST" "$REDIS_PORT" 30 || true
}

start_ours() {
	ensure_server_cert "$TLS_DIR" "Redis"
	log "starting our redis-server on $DEPS_HOST:$REDIS_PORT, TLS on $REDIS_TLS_PORT (log $LOG_FILE)"
	rm -f "$PID_FILE"
	# Tests need no persistence: no RDB snapshots, no AOF. TLS clients need
	# no certificate of their own (tls-auth-clients no), as with most managed Redis.
	if ! without_lock redis-server \
		--bind "$DEPS_HOST" --port "$REDIS_PORT" --protected-mode yes \
		--tls-port "$REDIS_TLS_PORT" --tls-cert-file "$TLS_DIR/server.pem" \
		--tls-key-file "$TLS_DIR/server.key" --tls-ca-cert-file "$TLS_DIR/ca.pem" \
		--tls-auth-clients no \
		--daemonize yes --pidfile "$PID_FILE" --dir "$STATE_DIR" --logfile "$LOG_FILE" \
		--save "" --appendonly no; then
		log_tail "$LOG_FILE"
		die "redis-server failed to start"
	fi
	local deadline=$((SECONDS + DEPS_TIMEOUT))
	until redis_ping; do
		if ((SECONDS >= deadline)); then
			log_tail "$LOG_FILE"
			die "redis did not answer PING on $DEPS_HOST:$REDIS_PORT within ${DEPS_TIMEOUT}s"
		fi
		sleep 0.1
	done
	until redis_tls_ping; do
		if ((SECONDS >= deadline)); then
			log_tail "$LOG_FILE"
			die "redis did not answer PING over TLS on $DEPS_HOST:$REDIS_TLS_PORT within ${DEPS_TIMEOUT}s"
		fi
		sleep 0.1
	done
	# The pid file is written right after daemonizing; wait for it so down works.
	until ours_pid >/dev/null; do
		if ((SECONDS >= deadline)); then
			die "redis-server answers but wrote no pid file at $PID_FILE"
		fi
		sleep 0.1
	done
}

cmd_up() {
	if ours_pid >/dev/null && redis_ping; then
		if ensure_server_cert "$TLS_DIR" "Redis" && redis_tls_ping; then
			log "already running (started by this script) on $DEPS_HOST:$REDIS_PORT, TLS on $REDIS_TLS_PORT"
			printf '%s\n' "$REDIS_URL"
			return 0
		fi
		# Started before TLS was configured (or with another certificate).
		log "ours does not answer over TLS on $DEPS_HOST:$REDIS_TLS_PORT: restarting it"
		stop_ours
		deps_forget
		wait_tcp_closed "$DEPS_HOST" "$REDIS_PORT" "$DEPS_TIMEOUT" || die "$DEPS_HOST:$REDIS_PORT still answers after stopping ours"
		start_ours
		log "ready: $REDIS_URL (TLS: $REDIS_TLS_URL)"
		printf '%s\n' "$REDIS_URL"
		return 0
	fi
	if tcp_open "$DEPS_HOST" "$REDIS_PORT"; then
		log "reusing the server already listening on $DEPS_HOST:$REDIS_PORT"
		if command -v redis-cli >/dev/null 2>&1 && ! redis_ping; then
			die "something listens on $DEPS_HOST:$REDIS_PORT but does not answer Redis PING (free the port or set AGGREGATOR_REDIS_PORT)"
		fi
		printf '%s\n' "$REDIS_URL"
		return 0
	fi
	if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
		install_server
		if tcp_open "$DEPS_HOST" "$REDIS_PORT"; then
			die "$DEPS_HOST:$REDIS_PORT is still taken after stopping the packaged service"
		fi
	fi
	start_ours
	log "ready: $REDIS_URL (TLS: $REDIS_TLS_URL)"
	printf '%s\n' "$REDIS_URL"
}

ours_running() {
	ours_pid >/dev/null
}

ours_detail() {
	local pid
	pid="$(ours_pid)" && printf 'pid %s' "$pid"
}

stop_ours() {
	local pid
	pid="$(ours_pid)" || return 0 # exited since ours_running
	log "stopping our redis-server (pid $pid)"
	# SHUTDOWN NOSAVE is immediate; SIGTERM is the fallback.
	timeout 5 redis-cli -h "$DEPS_HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
	stop_pid "$pid" 30
}

cmd_env() {
	printf "export AGGREGATOR_REDIS_URL='%s'\n" "$REDIS_URL"
	printf "export AGGREGATOR_TEST_REDIS_TLS_URL='%s'\n" "$REDIS_TLS_URL"
	printf "export AGGREGATOR_TEST_REDIS_TLS_CA_FILE='%s'\n" "$TLS_DIR/ca.pem"
}

deps_main "$@"
