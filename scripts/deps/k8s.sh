#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1, for the deployment tests: etcd, the API
# server (RBAC, Pod Security admission, token authentication), the controller manager and
# the scheduler, at the release tools/k8s/go.mod pins. No kubelet and no container runtime:
# Pods are created, admitted and scheduled, never run.
#
#   scripts/deps/k8s.sh up|down|restart|stop|start|status
#   eval "$(scripts/deps/k8s.sh env)"   # AGGREGATOR_TEST_KUBECONFIG (cluster-admin)
#
# The binaries are built once from the Go module proxy into <repo>/.cache/bin/k8s-<version>
# (a cold build takes several minutes on two cores; later starts take seconds). `up` starts
# from an empty etcd, then installs the CustomResourceDefinitions the chart may use, from
# the YAML shipped in their projects' published modules: KEDA's ScaledObject and
# TriggerAuthentication, prometheus-operator's ServiceMonitor, PodMonitor and
# PrometheusRule. State and logs live in ${AGGREGATOR_DEPS_DIR:-<repo>/.cache/deps}/k8s.
set -euo pipefail

DEPS_NAME=k8s
# shellcheck source=scripts/deps/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned versions of the modules the CRDs come from (checked against sum.golang.org).
# prometheus-operator: the newest version of its root module (which ships the CRD YAML) that
# the module proxy serves; the CRDs of the monitoring.coreos.com/v1 kinds are stable.
KEDA_MODULE=github.com/kedacore/keda/v2
KEDA_VERSION=v2.21.0
PROM_MODULE=github.com/prometheus-operator/prometheus-operator
PROM_VERSION=v0.85.0

TOOLS_DIR="$DEPS_REPO_ROOT/tools/k8s"
K8S_VERSION="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$TOOLS_DIR/go.mod")"
[[ -n $K8S_VERSION ]] || die "k8s.io/kubernetes not found in $TOOLS_DIR/go.mod"
BIN_DIR="$(deps_cache_dir)/bin/k8s-$K8S_VERSION"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

API_PORT="${AGGREGATOR_K8S_API_PORT:-6443}"
ETCD_PORT="${AGGREGATOR_K8S_ETCD_PORT:-12379}"
ETCD_PEER_PORT="${AGGREGATOR_K8S_ETCD_PEER_PORT:-12380}"
CM_PORT="${AGGREGATOR_K8S_CONTROLLER_MANAGER_PORT:-10257}"
SCHED_PORT="${AGGREGATOR_K8S_SCHEDULER_PORT:-10259}"

STATE="$(deps_state_dir k8s)"
PKI="$STATE/pki"
KUBECONFIG_FILE="$STATE/admin.kubeconfig"
API_URL="https://$DEPS_HOST:$API_PORT"
# The order of start; stopped in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)

# For deps_main (lib.sh).
DEPS_PORT="$API_PORT"
DEPS_URL="$API_URL (kubeconfig $KUBECONFIG_FILE)"
DEPS_PEER="API server"
DEPS_OURS=cluster

pid_file() { printf '%s/%s.pid\n' "$STATE" "$1"; }
log_file() { printf '%s/%s.log\n' "$STATE" "$1"; }

# The pattern leaves out the repository's path: .cache may be reached through a symlink.
component_pid() {
	pidfile_pid "$(pid_file "$1")" "/bin/k8s-$K8S_VERSION/$1 "
}

ours_running() {
	local c
	for c in "${COMPONENTS[@]}"; do
		component_pid "$c" >/dev/null && return 0
	done
	return 1
}

ours_detail() {
	local c pid out=()
	for c in "${COMPONENTS[@]}"; do
		pid="$(component_pid "$c")" || return 1
		out+=("$c pid $pid")
	done
	local IFS=,
	printf '%s' "${out[*]}"
}

stop_ours() {
	local i pid
	for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
		if pid="$(component_pid "${COMPONENTS[$i]}")"; then
			log "stopping ${COMPONENTS[$i]} (pid $pid)"
			stop_pid "$pid" 30
		fi
		rm -f "$(pid_file "${COMPONENTS[$i]}")"
	done
}

cmd_env() {
	printf "export AGGREGATOR_TEST_KUBECONFIG='%s'\n" "$KUBECONFIG_FILE"
}

# build : the control plane binaries, built once per pinned release (static, trimmed, with
# the release's version stamped where `kubectl version` and Helm's kubeVersion check read it).
build() {
	local b missing=0
	for b in "${BINARIES[@]}"; do
		[[ -x $BIN_DIR/$b ]] || missing=1
	done
	[[ $missing == 1 ]] || return 0
	mkdir -p "$(dirname "$BIN_DIR")"
	exec {build_fd}>"$BIN_DIR.lock"
	flock "$build_fd"
	for b in "${BINARIES[@]}"; do
		[[ -x $BIN_DIR/$b ]] || missing=2
	done
	if [[ $missing == 2 ]]; then
		local minor ldflags=(-s -w) p tmp start=$SECONDS
		minor="$(cut -d. -f2 <<<"$K8S_VERSION")"
		for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			ldflags+=(-X "$p.gitVersion=$K8S_VERSION" -X "$p.gitMajor=1" -X "$p.gitMinor=$minor" -X "$p.gitTreeState=clean")
		done
		log "building Kubernetes $K8S_VERSION and etcd into $BIN_DIR (a cold build takes several minutes)"
		tmp="$(mktemp -d "$BIN_DIR.tmp.XXXXXX")"
		# GOWORK=off: tools/k8s is deliberately not part of go.work. -mod=readonly: never
		# rewrite the pinned go.mod/go.sum.
		if ! GOWORK=off CGO_ENABLED=0 nice -n 10 go build -C "$TOOLS_DIR" -mod=readonly -trimpath \
			-ldflags "${ldflags[*]}" -o "$tmp/" ./etcd \
			k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
			k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl >&2; then
			rm -rf "$tmp"
			die "go build of the control plane failed"
		fi
		chmod 755 "$tmp"
		rm -rf "$BIN_DIR"
		mv "$tmp" "$BIN_DIR"
		log "built in $((SECONDS - start))s"
	fi
	exec {build_fd}>&-
}

# start NAME ARGS... : start a component in the background, detached from this shell.
start() {
	local name=$1
	shift
	log "starting $name (log $(log_file "$name"))"
	# setsid: it outlives this shell and the caller's terminal signals. The lock's fd is
	# closed so the server does not hold the lock for its lifetime (see without_lock).
	setsid "$BIN_DIR/$name" "$@" {DEPS_LOCK_FD}>&- >>"$(log_file "$name")" 2>&1 </dev/null &
	echo "$!" >"$(pid_file "$name")"
}

# wait_healthy NAME URL [CURL_ARGS...] : wait until URL answers 200, failing early when NAME dies.
wait_healthy() {
	local name=$1 url=$2 pid deadline=$((SECONDS + DEPS_TIMEOUT))
	shift 2
	pid="$(<"$(pid_file "$name")")"
	until curl -fsS --max-time 2 -o /dev/null "$@" "$url" 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log_tail "$(log_file "$name")"
			die "$name exited during start-up"
		fi
		if ((SECONDS >= deadline)); then
			log_tail "$(log_file "$name")"
			die "$name: no answer from $url within ${DEPS_TIMEOUT}s"
		fi
		sleep 0.2
	done
}

# kubeconfig FILE TOKEN USER : a kubeconfig for one identity of the token file.
kubeconfig() {
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: local
    cluster:
      server: $API_URL
      certificate-authority: $PKI/apiserver.crt
users:
  - name: $3
    user:
      token: $2
contexts:
  - name: local
    context:
      cluster: local
      user: $3
current-context: local
EOF
}

random_token() {
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

# module_dir MODULE VERSION : download a module through the module proxy (verified against
# the checksum database) and print its directory.
module_dir() {
	local tmp dir
	tmp="$(mktemp -d)"
	dir="$(cd "$tmp" && GOWORK=off GOFLAGS=-mod=mod go mod download -json "$1@$2" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	rm -rf "$tmp"
	[[ -n $dir && -d $dir ]] || die "go mod download $1@$2 failed"
	printf '%s\n' "$dir"
}

install_crds() {
	local keda prom files=()
	keda="$(module_dir "$KEDA_MODULE" "$KEDA_VERSION")"
	prom="$(module_dir "$PROM_MODULE" "$PROM_VERSION")"
	files=(
		"$keda/config/crd/bases/keda.sh_scaledobjects.yaml"
		"$keda/config/crd/bases/keda.sh_triggerauthentications.yaml"
		"$prom/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
		"$prom/example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml"
		"$prom/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
	)
	log "installing CRDs: KEDA $KEDA_VERSION, prometheus-operator $PROM_VERSION"
	local args=() f
	for f in "${files[@]}"; do args+=(-f "$f"); done
	# Server-side: the prometheus-operator CRDs exceed the client-side apply annotation limit.
	"$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_FILE" apply --server-side --field-manager=deps-k8s \
		"${args[@]}" >&2 || die "installing the CRDs failed"
	"$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_FILE" wait --for condition=Established \
		--timeout "${DEPS_TIMEOUT}s" "${args[@]}" >&2 || die "the CRDs were not established"
}

cmd_up() {
	if ours_running; then
		if ours_detail >/dev/null && tcp_open "$DEPS_HOST" "$API_PORT"; then
			log "already running (started by this script): $DEPS_URL"
			printf '%s\n' "$API_URL"
			return 0
		fi
		log "part of our cluster has stopped; restarting all of it"
		stop_ours
	fi
	if tcp_open "$DEPS_HOST" "$API_PORT"; then
		die "something else listens on $DEPS_HOST:$API_PORT (free the port or set AGGREGATOR_K8S_API_PORT)"
	fi
	command -v openssl >/dev/null || apt_install openssl
	command -v curl >/dev/null || apt_install curl
	build

	# A fresh cluster on every start: no state of an earlier run can leak into the tests.
	rm -rf "$STATE/etcd" "$PKI"
	mkdir -p "$PKI"
	(
		umask 077
		openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
		openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
		# Static tokens of the identities kubeadm would give certificates: a cluster admin,
		# and the controller manager and scheduler users the bootstrap RBAC roles bind.
		{
			printf '%s,admin,admin,system:masters\n' "$(random_token)"
			printf '%s,system:kube-controller-manager,kcm\n' "$(random_token)"
			printf '%s,system:kube-scheduler,sched\n' "$(random_token)"
		} >"$PKI/tokens.csv"
	) || die "generating keys failed"
	local admin_token cm_token sched_token
	admin_token="$(awk -F, '$2 == "admin" { print $1 }' "$PKI/tokens.csv")"
	cm_token="$(awk -F, '$2 == "system:kube-controller-manager" { print $1 }' "$PKI/tokens.csv")"
	sched_token="$(awk -F, '$2 == "system:kube-scheduler" { print $1 }' "$PKI/tokens.csv")"

	start etcd -data-dir "$STATE/etcd" \
		-listen-client-url "http://$DEPS_HOST:$ETCD_PORT" -listen-peer-url "http://$DEPS_HOST:$ETCD_PEER_PORT"
	wait_healthy etcd "http://$DEPS_HOST:$ETCD_PORT/health"

	# The API server writes a self-signed serving certificate (and its CA) into --cert-dir.
	# The admission plugins are the defaults, PodSecurity and ServiceAccount among them.
	# No endpoint reconciler: it refuses a loopback advertise address, and nothing in the
	# cluster calls the API server through the kubernetes Service.
	start kube-apiserver \
		--bind-address="$DEPS_HOST" --advertise-address="$DEPS_HOST" --secure-port="$API_PORT" \
		--etcd-servers="http://$DEPS_HOST:$ETCD_PORT" --cert-dir="$PKI" \
		--authorization-mode=RBAC --token-auth-file="$PKI/tokens.csv" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
		--service-cluster-ip-range=10.96.0.0/16 --allow-privileged=false --profiling=false \
		--endpoint-reconciler-type=none
	wait_healthy kube-apiserver "$API_URL/readyz" -H "Authorization: Bearer $admin_token" --cacert "$PKI/apiserver.crt"

	kubeconfig "$KUBECONFIG_FILE" "$admin_token" admin
	kubeconfig "$STATE/controller-manager.kubeconfig" "$cm_token" system:kube-controller-manager
	kubeconfig "$STATE/scheduler.kubeconfig" "$sched_token" system:kube-scheduler
	chmod 600 "$STATE"/*.kubeconfig

	start kube-controller-manager \
		--kubeconfig="$STATE/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
		--authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
		--bind-address="$DEPS_HOST" --secure-port="$CM_PORT" --cert-dir="$STATE/controller-manager" \
		--leader-elect=false --use-service-account-credentials=true \
		--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/apiserver.crt" \
		--profiling=false
	start kube-scheduler \
		--kubeconfig="$STATE/scheduler.kubeconfig" \
		--authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
		--authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
		--bind-address="$DEPS_HOST" --secure-port="$SCHED_PORT" --cert-dir="$STATE/scheduler" \
		--leader-elect=false --profiling=false
	wait_healthy kube-controller-manager "https://$DEPS_HOST:$CM_PORT/healthz" -k
	wait_healthy kube-scheduler "https://$DEPS_HOST:$SCHED_PORT/healthz" -k

	install_crds
	log "up: $DEPS_URL"
	printf '%s\n' "$API_URL"
}

deps_main "$@"
