#!/usr/bin/env bash
# Builds a real Vault server from the Go module proxy into a cache outside the repo, for the tests
# of Vault-issued credentials: Vault's core, HTTP API, database secrets engine (PostgreSQL plugin),
# Kubernetes auth method and KV, behind a development-mode entry point (devserver/main.go).
#
# Why not upstream's `vault` command: github.com/hashicorp/vault cannot be `go install`ed (its
# go.mod replaces its own api and sdk modules with ./api and ./sdk), and a wrapper module must
# pick one published sdk release for it. v1.21.4's in-tree sdk matches none: with sdk v0.20.0 the
# core builds but transit, pki, aws, consul, nomad, rabbitmq and totp do not (they call
# TryRecordObservationWithRequest, certutil.ValidateDefaultOrValueKeyType, a two-result
# RestorePolicy); with v0.21.0 and later the core does not (ActivationFunc's signature,
# GetConsumptionBillingManager). Package command links every builtin plugin, so our entry point
# links only the plugins the tests use, with sdk v0.20.0.
#
# The SSH secrets engine is the exception: v1.21.4's builtin/logical/ssh calls the observation
# APIs, which no published sdk has. It is built apart, as the external plugin upstream also ships
# (builtin/logical/ssh/cmd/ssh) at Vault $AIRLOCK_VAULT_SSH_VERSION (v1.20.4: no observations; its
# own sdk is v0.18.0), into bin/plugins/, which vault-dev serves with -plugin-dir.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: build-vault.sh [--print-dir] [--force]

Builds vault-dev (Vault $AIRLOCK_VAULT_VERSION, sdk $AIRLOCK_VAULT_SDK_VERSION) from Go modules
and caches it under $AIRLOCK_CACHE_DIR (default ~/.cache/airlock). A cached build is reused;
--force rebuilds. --print-dir prints the binary directory and exits.
USAGE
}

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VAULT_VERSION="${AIRLOCK_VAULT_VERSION:-v1.21.4}"
SSH_VAULT_VERSION="${AIRLOCK_VAULT_SSH_VERSION:-v1.20.4}"
SSH_SDK_VERSION="${AIRLOCK_VAULT_SSH_SDK_VERSION:-v0.18.0}"
SSH_API_VERSION="${AIRLOCK_VAULT_SSH_API_VERSION:-v1.20.0}"
SDK_VERSION="${AIRLOCK_VAULT_SDK_VERSION:-v0.20.0}"
CACHE="${AIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}"
# The entry point's hash is part of the path: editing devserver/main.go rebuilds.
MAIN_SUM="$(sha256sum "$HERE/devserver/main.go" | cut -c1-12)"
BIN="$CACHE/vault/vault-$VAULT_VERSION-sdk-$SDK_VERSION-$MAIN_SUM/bin"
FORCE=0
for arg in "$@"; do
  case "$arg" in
    --help|-h) usage; exit 0 ;;
    --print-dir) echo "$BIN"; exit 0 ;;
    --force) FORCE=1 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[vault %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The SSH secrets engine as an external plugin (see the top): a module of its own.
build_ssh_plugin() {
  local out="$BIN/plugins/vault-plugin-ssh"
  if [[ $FORCE == 0 && -x $out ]]; then return 0; fi
  local wdir="$CACHE/vault/work/ssh-plugin-$SSH_VAULT_VERSION-sdk-$SSH_SDK_VERSION"
  mkdir -p "$wdir" "$BIN/plugins"
  log "resolving github.com/hashicorp/vault@$SSH_VAULT_VERSION for the SSH plugin"
  local mod
  mod=$(cd "$wdir" && GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/vault@$SSH_VAULT_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [[ -f $mod ]] || { echo "could not download github.com/hashicorp/vault@$SSH_VAULT_VERSION go.mod" >&2; exit 1; }
  {
    echo "module airlock.dev/testbin/vault-ssh-plugin"
    echo
    grep -m1 '^go ' "$mod"
    echo
    echo "require github.com/hashicorp/vault $SSH_VAULT_VERSION"
    echo
    echo "replace ("
    grep -E '^replace .* => [^.]' "$mod" | sed 's/^replace /\t/'
    echo "	github.com/hashicorp/vault/sdk => github.com/hashicorp/vault/sdk $SSH_SDK_VERSION"
    echo "	github.com/hashicorp/vault/api => github.com/hashicorp/vault/api $SSH_API_VERSION"
    echo ")"
  } >"$wdir/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/hashicorp/vault/builtin/logical/ssh/cmd/ssh"\n' >"$wdir/tools.go"
  (cd "$wdir" && GOFLAGS=-mod=mod go mod tidy >/dev/null)
  log "compiling the SSH secrets engine plugin (Vault $SSH_VAULT_VERSION, sdk $SSH_SDK_VERSION)"
  (cd "$wdir" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go build -trimpath -ldflags "-s -w" -o "$out.tmp" github.com/hashicorp/vault/builtin/logical/ssh/cmd/ssh)
  mv "$out.tmp" "$out"
}

if [[ $FORCE == 0 && -x $BIN/vault-dev ]]; then
  build_ssh_plugin
  log "cached: $BIN"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to build Vault (install Go >= 1.25)" >&2; exit 1; }

mkdir -p "$BIN"
dir="$CACHE/vault/work/vault-$VAULT_VERSION-sdk-$SDK_VERSION"
mkdir -p "$dir"
log "resolving github.com/hashicorp/vault@$VAULT_VERSION"
upstream_mod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/vault@$VAULT_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
[[ -f $upstream_mod ]] || { echo "could not download github.com/hashicorp/vault@$VAULT_VERSION go.mod" >&2; exit 1; }
{
  echo "module airlock.dev/testbin/vault"
  echo
  grep -m1 '^go ' "$upstream_mod"
  echo
  echo "require github.com/hashicorp/vault $VAULT_VERSION"
  echo
  echo "replace ("
  # Upstream's replacements by published modules (not its ./api, ./sdk trees) apply here too.
  grep -E '^replace .* => [^.]' "$upstream_mod" | sed 's/^replace /\t/'
  echo "	github.com/hashicorp/vault/sdk => github.com/hashicorp/vault/sdk $SDK_VERSION"
  echo ")"
} >"$dir/go.mod"
cp "$HERE/devserver/main.go" "$dir/main.go"
log "downloading modules"
(cd "$dir" && GOFLAGS=-mod=mod go mod tidy >/dev/null)

heartbeat() { while sleep 30; do log "still building vault-dev ($(du -sh "${GOCACHE:-$HOME/.cache/go-build}" 2>/dev/null | cut -f1) in Go build cache)"; done; }
start=$(date +%s)
log "compiling vault-dev (Vault $VAULT_VERSION; the first build takes tens of minutes on 2 cores)"
heartbeat & hb=$!
(cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod nice -n 10 go build -trimpath -ldflags "-s -w" -o "$BIN/vault-dev.tmp" .) || { kill $hb; exit 1; }
kill $hb 2>/dev/null || true
mv "$BIN/vault-dev.tmp" "$BIN/vault-dev"
build_ssh_plugin
log "built in $(( $(date +%s) - start ))s: $("$BIN/vault-dev" -version)"
