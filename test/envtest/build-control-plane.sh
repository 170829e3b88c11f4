#!/usr/bin/env bash
# Builds kube-apiserver, kubectl and etcd from the Go module proxy into a cache outside the repo.
# k8s.io/kubernetes cannot be `go install`ed directly: its go.mod replaces every staging module
# with a local path. A wrapper module requires it and replaces each staging module with the
# published v0.X.Y instead. etcd gets its own wrapper so its gRPC/otel versions stay apart.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: build-control-plane.sh [--node] [--print-dir] [--force]

Builds kube-apiserver + kubectl (Kubernetes $AIRLOCK_K8S_VERSION) and etcd ($AIRLOCK_ETCD_VERSION)
from Go modules and caches them under $AIRLOCK_CACHE_DIR (default ~/.cache/airlock).
--node also builds the node components from the same wrapper module (kubelet, kube-scheduler,
kube-controller-manager, kube-proxy; test/node).
A cached build is reused; --force rebuilds. --print-dir prints the binary directory and exits.
USAGE
}

K8S_VERSION="${AIRLOCK_K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${AIRLOCK_ETCD_VERSION:-v3.6.16}"
CACHE="${AIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}"
BIN="$CACHE/control-plane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"
FORCE=0
CMDS=(kube-apiserver kubectl)
NODE_CMDS=(kubelet kube-scheduler kube-controller-manager kube-proxy)
for arg in "$@"; do
  case "$arg" in
    --help|-h) usage; exit 0 ;;
    --print-dir) echo "$BIN"; exit 0 ;;
    --force) FORCE=1 ;;
    --node) CMDS+=("${NODE_CMDS[@]}") ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[control-plane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# helm for the chart and observability suites: its own script and cache (test/harness/helm.sh),
# run from here so that `npm test` and .ci/run build it up front with visible progress. A failure
# is not fatal here: those suites report it.
build_helm() { bash "$(dirname "${BASH_SOURCE[0]}")/../harness/helm.sh" || log "helm could not be built (see above); test/chart will fail with the reason"; }

all_built() { local c; for c in "${CMDS[@]}"; do [[ -x $BIN/$c ]] || return 1; done; }
if [[ $FORCE == 0 && -x $BIN/etcd ]] && all_built; then
  log "cached: $BIN"
  build_helm
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build the control plane (apt-get install golang or install Go >= 1.25)" >&2; exit 1; }

mkdir -p "$BIN"
WORK="$CACHE/control-plane/work"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
patch="${K8S_VERSION##*.}"
staging_version="v0.$minor.$patch"

# Show that a long build is alive: Go prints nothing while compiling.
heartbeat() { local what=$1; while sleep 30; do log "still building $what ($(du -sh "${GOCACHE:-$HOME/.cache/go-build}" 2>/dev/null | cut -f1) in Go build cache)"; done; }

build_k8s() {
  local dir="$WORK/k8s-$K8S_VERSION"
  mkdir -p "$dir"
  log "resolving k8s.io/kubernetes@$K8S_VERSION"
  local upstream_mod
  upstream_mod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -f $upstream_mod ]] || { echo "could not download k8s.io/kubernetes@$K8S_VERSION go.mod" >&2; exit 1; }
  local go_line godebug_line
  go_line=$(grep -m1 '^go ' "$upstream_mod")
  godebug_line=$(grep -m1 '^godebug ' "$upstream_mod" || true)
  {
    echo "module airlock.dev/envtest/kube"
    echo
    echo "$go_line"
    [[ -n $godebug_line ]] && echo "$godebug_line"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # Every staging module upstream replaces with ./staging/... maps to its published version.
    grep -E '=> \./staging/src/' "$upstream_mod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$dir/go.mod"
  # Every command either script run may build, so that go.sum covers them all.
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    local c
    for c in kube-apiserver kubectl "${NODE_CMDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } >"$dir/tools.go"
  log "wrapper module has $(grep -c '=> k8s.io' "$dir/go.mod") staging replacements ($staging_version); downloading modules"
  (cd "$dir" && go mod tidy -e >/dev/null 2>&1 || true)
  (cd "$dir" && GOFLAGS=-mod=mod go get "k8s.io/kubernetes@$K8S_VERSION" >/dev/null)
  (cd "$dir" && GOFLAGS=-mod=mod go mod download)
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  for cmd in "${CMDS[@]}"; do
    [[ $FORCE == 0 && -x $BIN/$cmd ]] && continue
    log "compiling $cmd $K8S_VERSION (first build takes several minutes)"
    heartbeat "$cmd" & local hb=$!
    (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd") || { kill $hb; exit 1; }
    kill $hb 2>/dev/null || true
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
  done
}

build_etcd() {
  local dir="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<MOD
module airlock.dev/envtest/etcd

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat >"$dir/main.go" <<'GO'
// Command etcd runs the etcd server: the same entry point as upstream's etcdmain.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  log "downloading etcd $ETCD_VERSION modules"
  (cd "$dir" && GOFLAGS=-mod=mod go mod tidy >/dev/null)
  log "compiling etcd $ETCD_VERSION"
  heartbeat etcd & local hb=$!
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" .) || { kill $hb; exit 1; }
  kill $hb 2>/dev/null || true
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

start=$(date +%s)
[[ $FORCE == 0 && -x $BIN/etcd ]] || build_etcd
[[ $FORCE == 0 ]] && all_built || build_k8s
log "built in $(( $(date +%s) - start ))s: $("$BIN/kube-apiserver" --version) / etcd $("$BIN/etcd" --version | head -1)"
build_helm
