// Kubernetes label selector semantics (matchLabels AND matchExpressions); an empty or absent
// selector selects everything, as for NetworkPolicy's podSelector.
import type { AgentAccessPolicySpec } from "../../../api/src/index.ts";

export type LabelSelector = NonNullable<AgentAccessPolicySpec["podSelector"]>;

export function selectorMatches(
  selector: LabelSelector | undefined,
  labels: Readonly<Record<string, string>>,
): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    const values = e.values ?? [];
    const ok =
      e.operator === "In"
        ? has && values.includes(value as string)
        : e.operator === "NotIn"
          ? !has || !values.includes(value as string)
          : e.operator === "Exists"
            ? has
            : !has;
    if (!ok) return false;
  }
  return true;
}
