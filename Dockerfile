# syntax=docker/dockerfile:1
#
# The Airlock image: one image, three entry points.
#
#   airlock-sidecar   the per-pod enforcement proxy (the injector adds it as a native sidecar);
#                     runs as the proxy UID/GID 1717, the image's default user
#   airlock-init      installs the egress-capture iptables rules (nft and legacy backends), then
#                     exits; the injector runs it as root with only NET_ADMIN and NET_RAW
#   airlock-injector  the mutating admission webhook and policy controller (the Helm chart's
#                     Deployment)
#   airlock           the CLI (airlock inject, policy test, mask, demo)
#
# Build:   docker build -t ghcr.io/airlock-dev/airlock:dev .
# Check:   docker run --rm ghcr.io/airlock-dev/airlock:dev airlock-sidecar --help
#
# Sources are TypeScript run by Node 24's built-in type stripping: there is no compile step, the
# image carries the sources next to the production node_modules. The only native code is the
# SO_ORIGINAL_DST N-API addon (sidecar/native), compiled in the build stage; Node-API keeps it
# loadable by any later Node.

ARG NODE_VERSION=24.21.0
ARG DEBIAN=bookworm

# --- build: dependencies, the native addon, then production dependencies only ------------------
FROM node:${NODE_VERSION}-${DEBIAN}-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# node-gyp compiles against the headers of the Node in this image instead of downloading them.
ENV npm_config_nodedir=/usr/local \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false
COPY package.json package-lock.json ./
RUN npm ci --loglevel=error
COPY sidecar/native/ sidecar/native/
RUN npm run --silent build:native \
 && mkdir -p /out/sidecar/native/build/Release \
 && cp sidecar/native/build/Release/airlock_native.node /out/sidecar/native/build/Release/
RUN npm prune --omit=dev --loglevel=error \
 && cp -r node_modules package.json /out/
COPY bin/ /out/bin/
COPY api/ /out/api/
COPY cli/ /out/cli/
COPY init/ /out/init/
COPY injector/ /out/injector/
COPY sidecar/src/ /out/sidecar/src/
COPY examples/ /out/examples/

# --- runtime -------------------------------------------------------------------------------------
FROM node:${NODE_VERSION}-${DEBIAN}-slim
# iptables: Debian's package carries both backends (iptables-nft-* and iptables-legacy-*, and the
# ip6tables ones); airlock-init picks the one already in use in the pod, else nft.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1717 airlock \
 && useradd --uid 1717 --gid 1717 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin airlock
COPY --from=build /out/ /opt/airlock/
# Every package.json bin (and airlock-injector) on PATH, then a smoke test of the entry points.
RUN cd /opt/airlock \
 && node -e 'const fs = require("node:fs"); \
      const bins = { ...require("./package.json").bin, "airlock-injector": "bin/airlock-injector.js" }; \
      for (const [name, path] of Object.entries(bins)) { \
        fs.chmodSync(path, 0o755); fs.symlinkSync(`/opt/airlock/${path}`, `/usr/local/bin/${name}`); }' \
 && airlock-init --help >/dev/null \
 && airlock-injector --help >/dev/null \
 && airlock-sidecar --help >/dev/null
# The root filesystem is read-only in pods and the injector mounts an emptyDir on /tmp: the
# masking hash key (per pod) and the xtables lock live there.
ENV NODE_ENV=production \
    AIRLOCK_NATIVE_ADDON=/opt/airlock/sidecar/native/build/Release/airlock_native.node \
    AIRLOCK_HASH_KEY_FILE=/tmp/airlock/hash.key \
    XTABLES_LOCKFILE=/tmp/xtables.lock
WORKDIR /opt/airlock
# V8's young generation capped at 4 MB semi-spaces (default grows to 16; after start 32 MB of new
# space were committed, 1.4 MB in use). npm run bench, HTTP rows, RSS idle / after policy+audit /
# after JSON masking: default 97/133/157 MB, 4 MB 93/113/122 (two runs), 1 MB 88/114/140-152 (a
# smaller young generation promotes the requests in flight: old-space garbage), GC 3-4 % of the
# sidecar's CPU profile by default, 6-8 % at 4 MB, 7-11 % at 1 MB; CPU per request within noise.
# Node's compile cache, filled here as the proxy user at the paths the sidecar runs from (it is
# keyed by Node version, user id and file), then read-only: every module loads stripped and
# compiled, and Node's type stripper (a WebAssembly compiler, ~29 MB resident) is never loaded.
ENV NODE_OPTIONS=--max-semi-space-size=4 \
    NODE_COMPILE_CACHE=/opt/airlock/compile-cache
RUN install -d -o 1717 -g 1717 /opt/airlock/compile-cache \
 && setpriv --reuid 1717 --regid 1717 --clear-groups node bin/warm-compile-cache.mjs /opt/airlock/compile-cache \
 && chown -R root:root /opt/airlock/compile-cache \
 && chmod -R a=rX /opt/airlock/compile-cache
# The proxy UID/GID: the capture rules let this UID's traffic out directly.
USER 1717:1717
EXPOSE 15990 15991 9443
ENTRYPOINT []
CMD ["airlock", "--help"]

LABEL org.opencontainers.image.title="airlock" \
      org.opencontainers.image.description="Policy-enforcing egress sidecar, injector and capture init for AI agents on Kubernetes" \
      org.opencontainers.image.source="https://github.com/airlock-dev/airlock" \
      org.opencontainers.image.licenses="Apache-2.0"
