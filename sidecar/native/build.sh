#!/usr/bin/env bash
# Builds the N-API addon into sidecar/native/build/Release/airlock_native.node with node-gyp
# (a devDependency). Node-API means the result loads in every Node version >= 16, so this runs
# once per machine/image, not per Node upgrade. Needs python3, make and a C compiler.
# Headers come from $npm_config_nodedir when set (scripts/with-node.sh sets it), otherwise
# node-gyp downloads the headers of the running Node.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
gyp="$root/node_modules/.bin/node-gyp"
if [[ ! -x "$gyp" ]]; then
  echo "node-gyp not found in $root/node_modules (run npm ci first)" >&2
  exit 1
fi
cd "$here"
"$gyp" rebuild --release --silent "$@"
test -f build/Release/airlock_native.node
echo "built $here/build/Release/airlock_native.node"
