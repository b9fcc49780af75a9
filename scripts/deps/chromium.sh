#!/usr/bin/env bash
# Headless Chromium and the Node driver of the console's browser test.
#
#   scripts/deps/chromium.sh up|status|env
#
# up installs Debian's chromium (and nodejs/npm when missing; Node.js 20 or
# later is needed) with apt, then
# the pinned driver of test/console (npm ci, from its package-lock.json). It
# starts no server: the test launches its own browser. env prints
# AGGREGATOR_CHROMIUM, the browser the test drives.
set -euo pipefail

DEPS_NAME=chromium
# shellcheck source=scripts/deps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHROMIUM="${AGGREGATOR_CHROMIUM:-/usr/bin/chromium}"
TEST_DIR="$DEPS_REPO_ROOT/test/console"

cmd_up() {
	deps_lock "$(deps_state_dir chromium)/.lock"
	local missing=()
	[[ -x $CHROMIUM ]] || missing+=(chromium)
	command -v node >/dev/null 2>&1 || missing+=(nodejs)
	command -v npm >/dev/null 2>&1 || missing+=(npm)
	if [[ ${#missing[@]} -gt 0 ]]; then
		apt_install "${missing[@]}"
	fi
	[[ -x $CHROMIUM ]] || die "$CHROMIUM missing after install"
	# The driver (playwright-core) needs Node.js 20 or later; Debian 12's own
	# nodejs is 18, so a machine with only that one fails here, clearly.
	local major
	major=$(node -p 'process.versions.node.split(".")[0]')
	((major >= 20)) || die "the browser test needs Node.js 20 or later; found $(node --version)"
	# npm ci only when the lock file changed since the last install.
	local stamp="$TEST_DIR/node_modules/.installed-lock"
	if ! cmp -s "$TEST_DIR/package-lock.json" "$stamp" 2>/dev/null; then
		log "installing the browser driver (npm ci in test/console)"
		(cd "$TEST_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed in $TEST_DIR"
		cp "$TEST_DIR/package-lock.json" "$stamp"
	fi
	log "ready: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
}

cmd_status() {
	if [[ -x $CHROMIUM && -d $TEST_DIR/node_modules ]]; then
		printf 'chromium: installed %s\n' "$CHROMIUM"
	else
		printf 'chromium: not installed (%s)\n' "$CHROMIUM"
		return 1
	fi
}

case ${1:-} in
up) cmd_up ;;
status) cmd_status ;;
env) printf 'export AGGREGATOR_CHROMIUM=%q\n' "$CHROMIUM" ;;
*)
	echo "usage: $0 up|status|env" >&2
	exit 2
	;;
esac
