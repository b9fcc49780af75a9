#!/usr/bin/env bash
# PostgreSQL on 127.0.0.1:${AGGREGATOR_PG_PORT:-5432} for tests and local use.
#
#   scripts/deps/postgres.sh up|down|restart|stop|start|status|env
#
# up reuses a server already listening on the port; otherwise it installs
# Debian's postgresql when missing and runs a cluster of its own under the
# state dir. Either way it makes sure role "aggregator" (password "aggregator",
# LOGIN CREATEDB) and database "aggregator" owned by it exist, then prints the
# URL on stdout. down/stop/restart only act on a cluster this script started.
#
# Our cluster also serves TLS (ssl = on) on the same port, with a certificate
# for 127.0.0.1 and localhost signed by a private CA generated under the state
# dir; plain connections keep working. env prints, besides the plain URL,
# AGGREGATOR_TEST_POSTGRES_TLS_URL (sslmode=verify-full against that CA) and
# AGGREGATOR_TEST_POSTGRES_TLS_CA_FILE.
set -euo pipefail

DEPS_NAME=postgres
# shellcheck source=scripts/deps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/deps/certs.sh
source "$(dirname "${BASH_SOURCE[0]}")/certs.sh"

PG_PORT="${AGGREGATOR_PG_PORT:-5432}"
PG_ROLE=aggregator
PG_PASSWORD=aggregator
PG_DB=aggregator
PG_URL="postgres://$PG_ROLE:$PG_PASSWORD@$DEPS_HOST:$PG_PORT/$PG_DB?sslmode=disable"

STATE_DIR="$(deps_state_dir postgres)"
# The CA and the server's key pair; the server reads copies in its data dir.
TLS_DIR="$STATE_DIR/tls"
PG_TLS_URL="postgres://$PG_ROLE:$PG_PASSWORD@$DEPS_HOST:$PG_PORT/$PG_DB?sslmode=verify-full&sslrootcert=$TLS_DIR/ca.pem"

# For deps_main (lib.sh).
DEPS_PORT="$PG_PORT"
DEPS_URL="$PG_URL"
DEPS_PEER=server
DEPS_OURS=cluster

# Root cannot run postgres: the cluster belongs to the "postgres" OS user when
# we are root, else to whoever runs this script.
# Its superuser has the same name, so peer auth on our socket lets it in.
if [[ $EUID -eq 0 ]]; then
	PG_OS_USER=postgres
else
	PG_OS_USER="$(id -un)"
fi
PG_SUPERUSER="$PG_OS_USER"

# as_pg CMD... : run CMD as the cluster's OS user.
as_pg() {
	if [[ $EUID -eq 0 ]]; then
		runuser -u "$PG_OS_USER" -- "$@"
	else
		"$@"
	fi
}

# pg_bindir : newest installed server's bin dir (Debian keeps them per version).
pg_bindir() {
	local dir
	dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
	if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl && -x $dir/psql ]]; then
		printf '%s\n' "$dir"
		return 0
	fi
	return 1
}

# cluster_root : where our cluster lives. The state dir when the cluster's OS
# user can write there; otherwise (e.g. a checkout under a private home dir)
# a per-state-dir folder under postgres's home.
cluster_root() {
	local root="$STATE_DIR" alt
	# Before the package is installed the "postgres" user may not exist yet;
	# init_paths runs again after the install.
	if [[ $EUID -eq 0 ]] && id "$PG_OS_USER" >/dev/null 2>&1; then
		chown "$PG_OS_USER:" "$root"
		if ! runuser -u "$PG_OS_USER" -- test -w "$root" 2>/dev/null; then
			alt="$(getent passwd "$PG_OS_USER" | cut -d: -f6)/aggregator-deps/$(printf '%s' "$STATE_DIR" | cksum | cut -d' ' -f1)"
			mkdir -p "$alt"
			chown "$PG_OS_USER:" "$alt" "$(dirname "$alt")"
			printf '%s\n' "$alt" >"$STATE_DIR/cluster-location"
			root="$alt"
		fi
	fi
	printf '%s\n' "$root"
}

CLUSTER_ROOT=""
DATA_DIR=""
SOCKET_DIR=""
LOG_FILE=""
init_paths() {
	CLUSTER_ROOT="$(cluster_root)"
	DATA_DIR="$CLUSTER_ROOT/data"
	# Our own socket dir, so we never collide with a distro cluster's
	# /var/run/postgresql socket for the same port.
	SOCKET_DIR="$CLUSTER_ROOT/socket"
	LOG_FILE="$CLUSTER_ROOT/postgres.log"
}

# deps_prepare : deps_main's hook, run under the lock (cluster_root may chown).
deps_prepare() {
	init_paths
}

# ours_running : true when the cluster under our state dir is up.
ours_running() {
	local bindir
	[[ -f $DATA_DIR/PG_VERSION ]] || return 1
	bindir="$(pg_bindir)" || return 1
	as_pg "$bindir/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1
}

install_server() {
	apt_install postgresql
	# The package creates a "main" cluster and starts it where services may
	# start. Stop it and keep it from starting at boot, so the port is ours
	# and reuse detection is not fooled by a server nobody asked for.
	if command -v pg_lsclusters >/dev/null 2>&1; then
		local ver name port status _rest
		while read -r ver name port status _rest; do
			if [[ $status == online* ]]; then
				log "stopping the packaged cluster $ver/$name (port $port) so ours can run"
				as_root pg_ctlcluster "$ver" "$name" stop || true
			fi
			if [[ -f /etc/postgresql/$ver/$name/start.conf ]]; then
				as_root sh -c "echo manual > /etc/postgresql/$ver/$name/start.conf"
			fi
		done < <(pg_lsclusters -h 2>/dev/null || true)
	fi
}

write_config() {
	# Rewritten on every start so a changed port takes effect.
	as_pg tee "$DATA_DIR/aggregator.conf" >/dev/null <<EOF
# Managed by scripts/deps/postgres.sh; rewritten on every start.
listen_addresses = '$DEPS_HOST'
port = $PG_PORT
unix_socket_directories = '$SOCKET_DIR'
# Tests open many pools at once.
max_connections = 300
shared_buffers = 256MB
# Durability tests kill processes: keep the defaults that make commits durable.
fsync = on
synchronous_commit = on
full_page_writes = on
# TLS beside plain connections: server.crt and server.key in the data dir
# (install_server_cert). Reloadable, so up turns it on without a restart.
ssl = on
ssl_min_protocol_version = 'TLSv1.2'
EOF
}

# install_server_cert : the generated key pair into the data dir, owned by the
# cluster's OS user (postgres refuses a key others can read).
install_server_cert() {
	ensure_server_cert "$TLS_DIR" "Postgres"
	local owner=()
	if [[ $EUID -eq 0 ]]; then
		owner=(-o "$PG_OS_USER" -g "$(id -gn "$PG_OS_USER")")
	fi
	install "${owner[@]}" -m 0644 "$TLS_DIR/server.pem" "$DATA_DIR/server.crt"
	install "${owner[@]}" -m 0600 "$TLS_DIR/server.key" "$DATA_DIR/server.key"
}

# check_tls : the application role connects with sslmode=verify-full.
check_tls() {
	local got
	got="$(PGSSLMODE=verify-full PGSSLROOTCERT="$TLS_DIR/ca.pem" \
		app_psql -Atqc 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()' 2>"$STATE_DIR/tls-check.log")" || true
	if [[ $got != t ]]; then
		log_tail "$STATE_DIR/tls-check.log"
		log_tail "$LOG_FILE" 20
		die "TLS connections with sslmode=verify-full do not work on $DEPS_HOST:$PG_PORT"
	fi
}

# reload_ours : apply a rewritten config to the running cluster (ssl is reloadable).
reload_ours() {
	local bindir
	bindir="$(pg_bindir)"
	install_server_cert
	write_config
	as_pg "$bindir/pg_ctl" -D "$DATA_DIR" reload >/dev/null
}

init_cluster() {
	local bindir=$1
	as_pg mkdir -p "$SOCKET_DIR"
	as_pg chmod 0700 "$SOCKET_DIR"
	if [[ ! -f $DATA_DIR/PG_VERSION ]]; then
		log "initdb in $DATA_DIR"
		as_pg rm -rf "$DATA_DIR"
		# Local connections: the OS user only (peer); TCP: passwords (SCRAM).
		if ! as_pg "$bindir/initdb" -D "$DATA_DIR" -U "$PG_SUPERUSER" --auth-local=peer \
			--auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$STATE_DIR/initdb.log" 2>&1; then
			log_tail "$STATE_DIR/initdb.log"
			die "initdb failed"
		fi
		printf "\ninclude_if_exists = 'aggregator.conf'\n" | as_pg tee -a "$DATA_DIR/postgresql.conf" >/dev/null
	fi
	install_server_cert
	write_config
}

start_ours() {
	local bindir
	bindir="$(pg_bindir)" || die "postgres binaries not found after install"
	init_cluster "$bindir"
	log "starting our cluster on $DEPS_HOST:$PG_PORT (data $DATA_DIR, log $LOG_FILE)"
	if ! without_lock as_pg "$bindir/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t "$DEPS_TIMEOUT" start >/dev/null; then
		log_tail "$LOG_FILE"
		die "postgres did not start within ${DEPS_TIMEOUT}s"
	fi
	if ! wait_tcp "$DEPS_HOST" "$PG_PORT" "$DEPS_TIMEOUT"; then
		log_tail "$LOG_FILE"
		die "postgres started but $DEPS_HOST:$PG_PORT does not answer"
	fi
}

# superuser_psql ARGS... : psql as a superuser through a unix socket: ours when
# we own the cluster, else the distro's socket dir (peer auth as "postgres").
superuser_psql() {
	local bindir psql
	bindir="$(pg_bindir 2>/dev/null)" || true
	psql="${bindir:+$bindir/psql}"
	psql="${psql:-psql}"
	if ours_running; then
		as_pg "$psql" -X -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres "$@"
		return
	fi
	if [[ $EUID -eq 0 ]] && id postgres >/dev/null 2>&1; then
		runuser -u postgres -- "$psql" -X -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$PG_PORT" -d postgres "$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n -u postgres true 2>/dev/null; then
		sudo -n -u postgres "$psql" -X -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$PG_PORT" -d postgres "$@"
	else
		"$psql" -X -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$PG_PORT" -d postgres "$@"
	fi
}

# app_psql ARGS... : psql as the application role over TCP, as the tests connect.
app_psql() {
	local bindir psql
	bindir="$(pg_bindir 2>/dev/null)" || true
	psql="${bindir:+$bindir/psql}"
	psql="${psql:-psql}"
	PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 "$psql" -X -v ON_ERROR_STOP=1 \
		-h "$DEPS_HOST" -p "$PG_PORT" -U "$PG_ROLE" -d "$PG_DB" "$@"
}

ensure_role_and_db() {
	local mode=$1 sql_role has_db
	sql_role="DO \$\$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  ELSE
    ALTER ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END\$\$;"
	# A reused server that already lets the application in is left alone.
	if [[ $mode == reused ]] && app_psql -Atqc 'SELECT 1' >/dev/null 2>&1; then
		return 0
	fi
	if ! superuser_psql -Atqc "$sql_role" >"$STATE_DIR/ensure.log" 2>&1; then
		log_tail "$STATE_DIR/ensure.log"
		if [[ $mode == reused ]]; then
			die "a server is listening on $DEPS_HOST:$PG_PORT but role '$PG_ROLE' cannot log in to database '$PG_DB', and this script cannot reach it as a superuser to create them. Create them yourself: CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD'; CREATE DATABASE $PG_DB OWNER $PG_ROLE; (or free the port / set AGGREGATOR_PG_PORT)"
		fi
		die "could not create role '$PG_ROLE'"
	fi
	has_db="$(superuser_psql -Atqc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")"
	if [[ $has_db != 1 ]]; then
		log "creating database $PG_DB owned by $PG_ROLE"
		superuser_psql -qc "CREATE DATABASE $PG_DB OWNER $PG_ROLE" >/dev/null
	fi
	if ! app_psql -Atqc 'SELECT 1' >"$STATE_DIR/ensure.log" 2>&1; then
		log_tail "$STATE_DIR/ensure.log"
		die "role '$PG_ROLE' still cannot connect over TCP to $DEPS_HOST:$PG_PORT/$PG_DB (check pg_hba.conf allows password logins from 127.0.0.1)"
	fi
}

warn_settings() {
	local max
	max="$(app_psql -Atqc 'SHOW max_connections' 2>/dev/null || true)"
	if [[ -n $max && $max -lt 300 ]]; then
		log "warning: the reused server has max_connections=$max (tests expect 300)"
	fi
}

cmd_up() {
	if ours_running; then
		# Our cluster may be running with an outdated config; it is still ours.
		if tcp_open "$DEPS_HOST" "$PG_PORT"; then
			log "already running (started by this script) on $DEPS_HOST:$PG_PORT"
			# A cluster started before TLS was configured gets it now, without a restart.
			reload_ours
			ensure_role_and_db ours
			check_tls
			printf '%s\n' "$PG_URL"
			return 0
		fi
		die "our cluster in $DATA_DIR is running but not on $DEPS_HOST:$PG_PORT; run '$0 down' first"
	fi
	if tcp_open "$DEPS_HOST" "$PG_PORT"; then
		log "reusing the server already listening on $DEPS_HOST:$PG_PORT"
		ensure_role_and_db reused
		warn_settings
		printf '%s\n' "$PG_URL"
		return 0
	fi
	if ! pg_bindir >/dev/null; then
		install_server
		init_paths
		# The packaged cluster may be the one on our port: check again.
		if tcp_open "$DEPS_HOST" "$PG_PORT"; then
			die "$DEPS_HOST:$PG_PORT is still taken after stopping the packaged clusters"
		fi
	fi
	start_ours
	ensure_role_and_db ours
	check_tls
	log "ready: $PG_URL (TLS: $PG_TLS_URL)"
	printf '%s\n' "$PG_URL"
}

ours_detail() {
	ours_running && printf 'data %s' "$DATA_DIR"
}

stop_ours() {
	local bindir
	bindir="$(pg_bindir)"
	log "stopping our cluster ($DATA_DIR)"
	if ! as_pg "$bindir/pg_ctl" -D "$DATA_DIR" -m fast -w -t "$DEPS_TIMEOUT" stop >/dev/null; then
		log_tail "$LOG_FILE"
		die "postgres did not stop within ${DEPS_TIMEOUT}s"
	fi
}

# restart_ours : pg_ctl restart, which keeps the data and applies a changed config.
restart_ours() {
	local bindir
	bindir="$(pg_bindir)"
	install_server_cert
	write_config
	log "restarting our cluster (pg_ctl restart -m fast)"
	if ! without_lock as_pg "$bindir/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -m fast -w -t "$DEPS_TIMEOUT" restart >/dev/null; then
		log_tail "$LOG_FILE"
		die "postgres did not restart within ${DEPS_TIMEOUT}s"
	fi
	wait_tcp "$DEPS_HOST" "$PG_PORT" "$DEPS_TIMEOUT" || die "$DEPS_HOST:$PG_PORT does not answer after restart"
	ensure_role_and_db ours
	check_tls
	log "restarted"
	printf '%s\n' "$PG_URL"
}

cmd_env() {
	printf "export AGGREGATOR_POSTGRES_URL='%s'\n" "$PG_URL"
	printf "export AGGREGATOR_TEST_POSTGRES_TLS_URL='%s'\n" "$PG_TLS_URL"
	printf "export AGGREGATOR_TEST_POSTGRES_TLS_CA_FILE='%s'\n" "$TLS_DIR/ca.pem"
}

deps_main "$@"
