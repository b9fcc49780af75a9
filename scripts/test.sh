#!/usr/bin/env bash
# The whole test suite: starts the real dependencies (Postgres, Redis, Kafka,
# Jaeger, a Kubernetes control plane; installed or built when missing), then checks formatting and runs go vet and
# every test of every module with the race detector. A workspace root has no
# ./... that spans modules, so each module is run on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh up
# Headless Chromium and the Node driver of the console's browser test.
scripts/deps/chromium.sh up
eval "$(scripts/deps/chromium.sh env)"
eval "$(scripts/deps.sh env)"
# The tests read AGGREGATOR_TEST_* so that a developer's own settings of the
# binaries never point a test at the wrong server.
export AGGREGATOR_TEST_POSTGRES_URL=${AGGREGATOR_TEST_POSTGRES_URL:-$AGGREGATOR_POSTGRES_URL}
export AGGREGATOR_TEST_REDIS_URL=${AGGREGATOR_TEST_REDIS_URL:-$AGGREGATOR_REDIS_URL}
export AGGREGATOR_TEST_KAFKA_BROKERS=${AGGREGATOR_TEST_KAFKA_BROKERS:-$AGGREGATOR_KAFKA_BROKERS}
export AGGREGATOR_TEST_KAFKA_SASL_BROKERS=${AGGREGATOR_TEST_KAFKA_SASL_BROKERS:-$AGGREGATOR_KAFKA_SASL_SSL_BROKERS} AGGREGATOR_TEST_KAFKA_SASL_USER=${AGGREGATOR_TEST_KAFKA_SASL_USER:-$AGGREGATOR_KAFKA_SASL_SSL_USER} AGGREGATOR_TEST_KAFKA_SASL_PASSWORD=${AGGREGATOR_TEST_KAFKA_SASL_PASSWORD:-$AGGREGATOR_KAFKA_SASL_SSL_PASSWORD} AGGREGATOR_TEST_KAFKA_CA_FILE=${AGGREGATOR_TEST_KAFKA_CA_FILE:-$AGGREGATOR_KAFKA_SASL_SSL_CA_FILE}
# The TLS endpoints of the same Postgres and Redis (printed by their env verbs).
export AGGREGATOR_TEST_POSTGRES_TLS_URL=${AGGREGATOR_TEST_POSTGRES_TLS_URL:?no Postgres TLS URL from scripts/deps.sh env}
export AGGREGATOR_TEST_POSTGRES_TLS_CA_FILE=${AGGREGATOR_TEST_POSTGRES_TLS_CA_FILE:?no Postgres CA from scripts/deps.sh env}
export AGGREGATOR_TEST_REDIS_TLS_URL=${AGGREGATOR_TEST_REDIS_TLS_URL:?no Redis TLS URL from scripts/deps.sh env}
export AGGREGATOR_TEST_REDIS_TLS_CA_FILE=${AGGREGATOR_TEST_REDIS_TLS_CA_FILE:?no Redis CA from scripts/deps.sh env}
unset AGGREGATOR_POSTGRES_URL AGGREGATOR_REDIS_URL AGGREGATOR_KAFKA_BROKERS

echo "== gofmt" >&2
unformatted=$(git ls-files -co --exclude-standard '*.go' | xargs -r gofmt -l)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi

# Workspace modules, then the modules kept out of the workspace on purpose
# (their dependencies must not leak into the product's build). Discovery is
# checked against go.work: a failed or short list would otherwise test
# nothing and still print "all modules passed".
modules=$(go list -m -f '{{.Dir}}') || { echo "module discovery failed" >&2; exit 1; }
mapfile -t workspace <<<"$modules"
declared=$(go work edit -json | grep -c '"DiskPath"' || true)
declared=${declared:-0}
if [ -z "$modules" ] || [ "$declared" -eq 0 ] || [ "${#workspace[@]}" -lt "$declared" ]; then
  echo "module discovery found ${#workspace[@]} module(s) (${modules:-none}); go.work declares $declared" >&2
  exit 1
fi
standalone=()
[ -d test/deploy ] && standalone+=("$PWD/test/deploy")

failed=()
run_module() { # dir, then env assignments for go
  local dir=$1; shift
  echo "== $(realpath --relative-to="$PWD" "$dir")" >&2
  if ! (cd "$dir" && env "$@" go vet ./... && env "$@" go test -race -count=1 -timeout 25m ./...); then
    failed+=("$dir")
  fi
}
for dir in "${workspace[@]}"; do run_module "$dir" GOFLAGS="${GOFLAGS:-}"; done
for dir in "${standalone[@]}"; do run_module "$dir" GOWORK=off; done

# The web console in a real browser (Node's test runner drives Chromium).
echo "== test/console" >&2
if ! (cd test/console && npm test); then
  failed+=("$PWD/test/console")
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED modules: ${failed[*]}" >&2
  exit 1
fi
echo "all modules passed" >&2
