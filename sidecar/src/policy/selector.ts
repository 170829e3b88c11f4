// Kubernetes label selector semantics (matchLabels AND matchExpressions); an empty or absent
// selector selects everything, as for NetworkPolicy's podSelector. Shared by the sidecar (which
// policies apply to me) and the injector (which Secrets to mount).

export interface LabelSelector {
  matchLabels?: Readonly<Record<string, string>>;
  matchExpressions?: readonly { key: string; operator: string; values?: readonly string[] }[];
}

export function selectorMatches(
  selector: LabelSelector | undefined,
  labels: Readonly<Record<string, string>> | undefined,
): boolean {
  if (!selector) return true;
  const have = labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (have[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const present = Object.hasOwn(have, e.key);
    const listed = present && (e.values ?? []).includes(have[e.key] as string);
    switch (e.operator) {
      case "In":
        if (!listed) return false;
        break;
      case "NotIn":
        if (listed) return false;
        break;
      case "Exists":
        if (!present) return false;
        break;
      case "DoesNotExist":
        if (present) return false;
        break;
      default:
        // An operator we do not know selects nothing: fail closed.
        return false;
    }
  }
  return true;
}
