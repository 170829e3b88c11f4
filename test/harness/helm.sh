#!/usr/bin/env bash
# Builds helm from the Go module proxy (`go install helm.sh/helm/v3/cmd/helm@VERSION`) into a cache
# outside the repo, with the ldflags upstream's Makefile sets: the version `helm version` prints
# and the Kubernetes version `helm template`/`helm lint` assume (without them helm believes it
# talks to Kubernetes v1.20 and a chart's kubeVersion constraint fails).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: helm.sh [--print-path] [--force]

Builds helm $AIRLOCK_HELM_VERSION (default below) with `go install` and caches it at
$AIRLOCK_CACHE_DIR/helm/<version>/bin/helm (default cache ~/.cache/airlock). A cached build is
reused; --force rebuilds. --print-path prints the binary's path and exits.
USAGE
}

HELM_VERSION="${AIRLOCK_HELM_VERSION:-v3.21.4}"
CACHE="${AIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}"
BIN="$CACHE/helm/$HELM_VERSION/bin"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --help|-h) usage; exit 0 ;;
    --print-path) echo "$BIN/helm"; exit 0 ;;
    --force) FORCE=1 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ $FORCE == 0 && -x $BIN/helm ]]; then
  log "cached: $BIN/helm"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build helm (apt-get install golang-go, or Go >= 1.25)" >&2; exit 1; }
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

start=$(date +%s)
mkdir -p "$BIN"
log "resolving helm.sh/helm/v3@$HELM_VERSION"
gomod=$(cd "$BIN" && GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[[ -f $gomod ]] || { echo "could not download helm.sh/helm/v3@$HELM_VERSION" >&2; exit 1; }
# As upstream's Makefile: the Kubernetes version helm assumes is client-go's minor, as 1.<minor>.
client_go=$(awk '$1 == "k8s.io/client-go" {print $2; exit}' "$gomod")
k8s_minor=$(echo "$client_go" | cut -d. -f2)
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$k8s_minor"
done

# Go prints nothing while it compiles: show that a long build is alive.
# (sleep's output goes nowhere, so that killing the loop leaves nothing holding the caller's pipes.)
( while sleep 20 </dev/null >/dev/null 2>&1; do log "still building helm ($(du -sh "$(go env GOCACHE)" 2>/dev/null | cut -f1) in Go build cache)"; done ) &
hb=$!
trap 'kill $hb 2>/dev/null || true' EXIT
log "compiling helm $HELM_VERSION (client-go $client_go; a few minutes on a cold Go cache)"
tmp=$(mktemp -d "$BIN/.install.XXXXXX")
CGO_ENABLED=0 GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
mv "$tmp/helm" "$BIN/helm"
rmdir "$tmp"
log "built in $(( $(date +%s) - start ))s: $("$BIN/helm" version --short) at $BIN/helm"
