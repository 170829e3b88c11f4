#!/usr/bin/env bash
# Airlock end to end on a real cluster (kind): build the image, load it into a kind cluster,
# `helm install` the chart, label a namespace, apply a policy, run an agent pod against an
# in-cluster PostgreSQL and HTTP service, and check injection, a denial, masked results and metrics.
#
#   bash test/e2e-kind/run.sh            # needs a container engine (docker info must work)
#   AIRLOCK_E2E_KEEP=1 bash test/e2e-kind/run.sh   # leave the cluster running afterwards
#
# kind and helm are built from the Go module proxy into ~/.cache/airlock when missing (kind with
# `go install sigs.k8s.io/kind`, helm by test/harness/helm.sh). Exit codes: 0 passed, 1 failed,
# 77 skipped (no container engine: the reason is printed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/test/e2e-kind"
cd "$root"

CLUSTER="${AIRLOCK_E2E_CLUSTER:-airlock-e2e}"
IMAGE_REPO="ghcr.io/airlock-dev/airlock"
IMAGE_TAG="${AIRLOCK_E2E_TAG:-e2e}"
IMAGE="$IMAGE_REPO:$IMAGE_TAG"
KIND_VERSION="${AIRLOCK_KIND_VERSION:-v0.31.0}"
CACHE="${AIRLOCK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock}"
start=$(date +%s)
step() { printf '\n== [e2e-kind %ss] %s\n' "$(( $(date +%s) - start ))" "$*" >&2; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; diagnostics; exit 1; }

# --- preconditions ------------------------------------------------------------------------------
engine_error=$(docker info 2>&1 >/dev/null) || {
  printf 'SKIP: no container engine: `docker info` failed (%s). kind runs Kubernetes nodes as containers and the image must be built; run this on a machine with Docker or Podman (docker CLI).\n' \
    "$(printf '%s' "$engine_error" | tr '\n' ' ' | cut -c1-200)" >&2
  exit 77
}
command -v kubectl >/dev/null || fail "kubectl is required"

if command -v kind >/dev/null; then
  KIND=$(command -v kind)
else
  KIND="$CACHE/kind/$KIND_VERSION/kind"
  if [[ ! -x $KIND ]]; then
    step "building kind $KIND_VERSION from the Go module proxy"
    mkdir -p "$(dirname "$KIND")"
    GOBIN="$(dirname "$KIND")" go install "sigs.k8s.io/kind@$KIND_VERSION"
  fi
fi
bash test/harness/helm.sh
HELM=$(bash test/harness/helm.sh --print-path)

diagnostics() {
  [[ -n "${KUBECONFIG:-}" ]] || return 0
  echo "--- diagnostics" >&2
  kubectl get pods -A -o wide >&2 || true
  kubectl -n agents describe pod analyst >&2 || true
  kubectl -n agents logs analyst -c airlock-sidecar --tail=80 >&2 || true
  kubectl -n airlock-system logs deploy/airlock-injector --tail=80 >&2 || true
}

cleanup() {
  if [[ "${AIRLOCK_E2E_KEEP:-0}" == 1 ]]; then
    echo "cluster $CLUSTER kept (KUBECONFIG=$KUBECONFIG); delete it with: $KIND delete cluster --name $CLUSTER" >&2
  else
    "$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  fi
}

# --- cluster and image --------------------------------------------------------------------------
step "kind cluster $CLUSTER"
export KUBECONFIG="${TMPDIR:-/tmp}/airlock-e2e-$CLUSTER.kubeconfig"
"$KIND" delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
"$KIND" create cluster --name "$CLUSTER" --config "$here/kind-config.yaml" --kubeconfig "$KUBECONFIG" --wait 120s
trap cleanup EXIT

step "docker build $IMAGE"
docker build -t "$IMAGE" .
docker run --rm "$IMAGE" airlock-init --help >/dev/null || fail "airlock-init does not run in the image"
docker run --rm "$IMAGE" airlock-injector --help >/dev/null || fail "airlock-injector does not run in the image"
docker run --rm "$IMAGE" sh -c 'iptables-nft-save --version && iptables-legacy-save --version && id -u' \
  | tee /dev/stderr | tail -1 | grep -qx 1717 || fail "the image must have both iptables backends and run as 1717"
step "kind load docker-image"
"$KIND" load docker-image "$IMAGE" --name "$CLUSTER"

# --- install --------------------------------------------------------------------------------------
step "helm install airlock"
kubectl apply -f "$here/manifests/00-namespaces.yaml"
"$HELM" install airlock charts/airlock --namespace airlock-system --create-namespace \
  --set image.tag="$IMAGE_TAG" --set image.pullPolicy=IfNotPresent \
  --set "sidecar.rbac.namespaces={agents}" \
  --wait --timeout 5m
kubectl -n airlock-system rollout status deploy/airlock-injector --timeout=120s
ca=$(kubectl get mutatingwebhookconfiguration airlock-injector -o jsonpath='{.webhooks[0].clientConfig.caBundle}')
[[ -n $ca ]] || fail "the injector did not write the webhook's caBundle (bootstrap TLS)"

step "upstreams, policy, agent"
kubectl apply -f "$here/manifests/10-upstreams.yaml"
kubectl -n data rollout status deploy/warehouse --timeout=180s
kubectl -n data rollout status deploy/tickets --timeout=180s
kubectl apply -f "$here/manifests/20-policy.yaml"
kubectl -n agents wait --for=condition=Ready aap/analyst --timeout=60s \
  || fail "policy analyst is not Ready: $(kubectl -n agents get aap analyst -o jsonpath='{.status.conditions}')"
kubectl apply -f "$here/manifests/30-agent.yaml"

# --- checks -----------------------------------------------------------------------------------------
step "injection"
init=$(kubectl -n agents get pod analyst -o jsonpath='{.spec.initContainers[*].name}')
[[ $init == "airlock-init airlock-sidecar" ]] || fail "expected init containers airlock-init airlock-sidecar, got: $init"
kubectl -n agents get pod analyst -o jsonpath='{.metadata.annotations.airlock\.dev/status}' | grep -q '"policies"' \
  || fail "airlock.dev/status annotation missing"
kubectl -n agents wait --for=condition=Ready pod/analyst --timeout=180s || fail "agent pod not Ready"

agent() { kubectl -n agents exec analyst -c agent -- "$@"; }

step "PostgreSQL: a read, masked"
out=$(agent psql -XAt -c "select email from customers order by id") || fail "select failed: $out"
echo "$out" >&2
grep -q "ada.lovelace@example.com" <<<"$out" && fail "e-mail reached the agent unmasked"
grep -q "@example.com" <<<"$out" || fail "expected partially masked e-mails, got: $out"

step "PostgreSQL: a denial"
if out=$(agent psql -XAt -c "delete from customers where id = 1" 2>&1); then fail "delete was allowed: $out"; fi
echo "$out" >&2
grep -q "Airlock denied this statement" <<<"$out" || fail "expected Airlock's denial, got: $out"
[[ $(agent psql -XAt -c "select count(*) from customers") == 2 ]] || fail "the denied delete reached the database"

step "HTTP: a GET, masked; a POST, denied"
out=$(agent wget -qO- http://tickets.data.svc.cluster.local/) || fail "GET failed: $out"
echo "$out" >&2
grep -q "grace.hopper@example.com" <<<"$out" && fail "e-mail reached the agent unmasked"
if out=$(agent wget -qO- --post-data='{}' http://tickets.data.svc.cluster.local/ 2>&1); then fail "POST was allowed: $out"; fi
grep -q "403" <<<"$out" || fail "expected 403, got: $out"

step "no way around: the same service under a name no policy connection names"
if out=$(agent wget -qO- -T 5 http://tickets-direct.data.svc.cluster.local:8080/ 2>&1); then
  fail "unknown destination reachable: $out"
fi

step "metrics"
metrics=$(agent wget -qO- http://127.0.0.1:15990/metrics)
for want in 'airlock_operations_total{connection="warehouse",protocol="postgres",decision="deny"}' \
  'airlock_operations_total{connection="tickets",protocol="http",decision="allow"}' \
  'airlock_masked_values_total{connection="warehouse",detector="email"}' \
  'airlock_policy_source_up 1'; do
  grep -qF "$want" <<<"$metrics" || fail "sidecar metrics lack $want"
done
grep -Eq '^airlock_unknown_destination_total [1-9]' <<<"$metrics" || fail "the unknown destination was not counted"
for want in 'airlock_masked_values_total{connection="tickets",detector="email"}'; do
  grep -qF "$want" <<<"$metrics" || fail "sidecar metrics lack $want"
done
injector_metrics=$(kubectl get --raw "/api/v1/namespaces/airlock-system/services/airlock-injector:http-metrics/proxy/metrics")
grep -q 'airlock_injector_admissions_total{result="injected"}' <<<"$injector_metrics" || fail "injector metrics lack injected admissions"

step "passed in $(( $(date +%s) - start ))s"
