#!/usr/bin/env bash
# Builds a pinned development tool from its own module under tools/<name> and prints the
# binary's path on stdout (everything else goes to stderr), e.g. helm=$(scripts/tools.sh helm).
#
# Each tool is a `tool` directive in a module of its own, kept out of go.work so its large
# dependency graph never touches the product's modules. Binaries are cached per pinned
# version in ${AGGREGATOR_CACHE_DIR:-<repo>/.cache}/bin/<name>-<version>; a cache hit costs
# no Go invocation at all.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { echo "usage: $0 jaeger|helm" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
name=$1

case $name in
  jaeger)
    mod=github.com/jaegertracing/jaeger
    pkg=$mod/cmd/jaeger
    ;;
  helm)
    mod=helm.sh/helm/v3
    pkg=$mod/cmd/helm
    ;;
  *) usage ;;
esac

moddir=$repo/tools/$name
gomod=$moddir/go.mod

# The version of a module as required by the tool module's go.mod (read with awk, not
# `go list`, so the cache-hit path stays instant).
required_version() {
  awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$gomod"
}

version=$(required_version "$mod")
[[ -n $version ]] || { echo "tools.sh: $mod not found in $gomod" >&2; exit 1; }

bindir=${AGGREGATOR_CACHE_DIR:-$repo/.cache}/bin
out=$bindir/$name-$version

if [[ -x $out ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$bindir"

# Serialize concurrent callers: the first builds, the others wait and then reuse the result.
exec 9>"$out.lock"
flock 9
if [[ -x $out ]]; then
  echo "$out"
  exit 0
fi

# Build the way the upstream release Makefiles do (static, trimmed paths, version stamped),
# so `jaeger version`, `helm version` and Helm's default Kubernetes version match a release.
ldflags=()
case $name in
  jaeger)
    ldflags=(-X "$mod/internal/version.latestVersion=$version")
    ;;
  helm)
    # Helm's default .Capabilities.KubeVersion (used by lint and template) is derived from the
    # client-go it is built with; without these flags it falls back to v1.20.
    k8s=$(required_version k8s.io/client-go)   # e.g. v0.37.0 -> Kubernetes 1.37
    k8s_minor=$(cut -d. -f2 <<<"$k8s")
    ldflags=(-s -w
      -X "$mod/internal/version.version=$version"
      -X "$mod/internal/version.gitTreeState=clean"
      -X "$mod/pkg/lint/rules.k8sVersionMajor=1"
      -X "$mod/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
      -X "$mod/pkg/chartutil.k8sVersionMajor=1"
      -X "$mod/pkg/chartutil.k8sVersionMinor=$k8s_minor")
    ;;
esac

echo "tools.sh: building $pkg@$version into $out (a cold build takes minutes)" >&2
start=$SECONDS
tmp=$(mktemp "$out.tmp.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# GOWORK=off: the tool module is deliberately not part of go.work.
# -mod=readonly: a build must never rewrite the pinned go.mod/go.sum.
GOWORK=off CGO_ENABLED=0 go build -C "$moddir" -mod=readonly -trimpath \
  -ldflags "${ldflags[*]}" -o "$tmp" "$pkg" >&2
mv -f "$tmp" "$out"
trap - EXIT
echo "tools.sh: built $name $version in $((SECONDS - start))s" >&2
echo "$out"
