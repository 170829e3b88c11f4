#!/usr/bin/env bash
# Copies the repository's crds/ into the chart: CustomResourceDefinitions into crds/ (Helm
# installs them before the templates), every other object (the approvals
# ValidatingAdmissionPolicy, its binding, RBAC) into files/admission/, which
# templates/admission-policies.yaml renders. test/chart fails when the copies drift: run this after
# `npm run generate` or after editing crds/.
set -euo pipefail
chart="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$chart/../../crds"
rm -f "$chart"/crds/*.yaml "$chart"/files/admission/*.yaml
mkdir -p "$chart/crds" "$chart/files/admission"
for f in "$src"/*.yaml "$src"/*.yml; do
  [[ -f $f ]] || continue
  kinds=$(grep -E '^kind:' "$f" | awk '{print $2}' | sort -u)
  if [[ $kinds == CustomResourceDefinition ]]; then
    cp "$f" "$chart/crds/$(basename "$f")"
  elif grep -qx CustomResourceDefinition <<<"$kinds"; then
    echo "$f mixes CustomResourceDefinitions with other kinds; split it" >&2
    exit 1
  else
    cp "$f" "$chart/files/admission/$(basename "$f")"
  fi
done
echo "synced $(ls "$chart/crds" | wc -l) CRD file(s) and $(ls "$chart/files/admission" | wc -l) other object file(s) from crds/"
