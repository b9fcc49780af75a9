#!/usr/bin/env bash
# The whole test suite: starts the real dependencies (Postgres, Redis, Kafka,
# Jaeger, a Kubernetes control plane; installed or built when missing), then checks formatting and runs go vet and
# every test of every module with the race detector. A workspace root has no
# ./... that spans modules, so each module is run on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh up
eval "$(scripts/deps.sh env)"
# The tests read AGGREGATOR_TEST_* so that a developer's own settings of the
# binaries never point a test at the wrong server.
export AGGREGATOR_TEST_POSTGRES_URL=${AGGREGATOR_TEST_POSTGRES_URL:-$AGGREGATOR_POSTGRES_URL}
export AGGREGATOR_TEST_REDIS_URL=${AGGREGATOR_TEST_REDIS_URL:-$AGGREGATOR_REDIS_URL}
export AGGREGATOR_TEST_KAFKA_BROKERS=${AGGREGATOR_TEST_KAFKA_BROKERS:-$AGGREGATOR_KAFKA_BROKERS}
unset AGGREGATOR_POSTGRES_URL AGGREGATOR_REDIS_URL AGGREGATOR_KAFKA_BROKERS

echo "== gofmt" >&2
unformatted=$(git ls-files -co --exclude-standard '*.go' | xargs -r gofmt -l)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi

# Workspace modules, then the modules kept out of the workspace on purpose
# (their dependencies must not leak into the product's build).
mapfile -t workspace < <(go list -m -f '{{.Dir}}')
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

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED modules: ${failed[*]}" >&2
  exit 1
fi
echo "all modules passed" >&2
