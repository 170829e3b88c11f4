#!/usr/bin/env bash
# The node suite: Airlock on a real node (containerd, runc, the kubelet and the control plane's
# controllers; test/node/node.ts), run alone and after everything else (.ci/run calls it last).
#
#   bash test/node/run.sh [vitest args]      e.g. -t "a Job"
#
# As root on Linux it installs the Debian packages a node needs when missing; the Kubernetes node
# binaries and the images are built into ~/.cache/airlock on first use (startNode). Elsewhere the
# suite does not start a node: vitest reports it skipped and prints why.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
if [[ $(uname -s) == Linux && $(id -u) -eq 0 ]]; then
  # containerd/runc: the runtime; containernetworking-plugins: the pod network (bridge,
  # host-local, loopback); umoci/debootstrap/rsync: images with no registry; gcc/libc6-dev: the static
  # pause binary.
  packages=(containerd runc containernetworking-plugins umoci debootstrap rsync iptables iproute2 gcc libc6-dev)
  missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
start=$(date +%s)
set +e
bash scripts/with-node.sh vitest run --config test/node/vitest.config.ts "$@"
code=$?
set -e
echo "node suite: exit $code in $(($(date +%s) - start)) s"
exit $code
