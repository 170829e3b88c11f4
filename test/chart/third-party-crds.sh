#!/usr/bin/env bash
# Prints the paths of the real CustomResourceDefinitions the chart's optional objects need, taken
# from the upstream Go modules through the Go module proxy (cached in Go's module cache):
#   monitoring.coreos.com ServiceMonitor, PodMonitor, PrometheusRule  (prometheus-operator)
#   cert-manager.io Certificate, Issuer                               (cert-manager)
# so that the API server validates the chart's objects against the real schemas.
set -euo pipefail
PROMETHEUS_OPERATOR="${AIRLOCK_PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
CERT_MANAGER="${AIRLOCK_CERT_MANAGER_VERSION:-v1.21.2}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOFLAGS=-mod=mod
command -v go >/dev/null || { echo "go is required to fetch the prometheus-operator and cert-manager CRDs" >&2; exit 1; }
dir_of() {
  local d
  d=$(cd "${TMPDIR:-/tmp}" && go mod download -json "$1@$2" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [[ -d $d ]] || { echo "could not download $1@$2 from the Go module proxy" >&2; exit 1; }
  echo "$d"
}
po=$(dir_of github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR")
cm=$(dir_of github.com/cert-manager/cert-manager "$CERT_MANAGER")
for f in servicemonitors podmonitors prometheusrules; do
  echo "$po/example/prometheus-operator-crd/monitoring.coreos.com_$f.yaml"
done
for f in certificates issuers; do
  echo "$cm/deploy/crds/cert-manager.io_$f.yaml"
done
