#!/usr/bin/env bash
# `npm test`: the whole suite, from a fresh clone. Installs Node 24 and dependencies when missing,
# builds the Kubernetes control plane into the cache on first use (minutes; cached afterwards),
# then runs vitest's unit and integration projects and prints one summary line.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ "${1:-}" == "--help" ]]; then
  echo "Usage: npm test [-- vitest args]   e.g. npm test -- --project unit, npm test -- test/crds"
  exit 0
fi
bash test/envtest/build-control-plane.sh
# The SO_ORIGINAL_DST addon (N-API, one build for every Node); rebuilt only when missing.
[[ -f sidecar/native/build/Release/airlock_native.node ]] || bash scripts/with-node.sh npm run --silent build:native
report="$(mktemp -d)/vitest.json"
set +e
bash scripts/with-node.sh vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
code=$?
set -e
if [[ -f "$report" ]]; then
  bash scripts/with-node.sh node -e '
    const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
    const skipped = r.numPendingTests + r.numTodoTests;
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
  ' "$report"
fi
exit $code
