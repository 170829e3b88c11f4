// What the policy controller concludes about one AgentAccessPolicy: is it valid, do the Secrets
// and keys it names exist. Pure, so it is tested without a cluster.
import type { AgentAccessPolicy, AgentAccessPolicyStatus } from "../../api/src/index.ts";
import { validatePolicy } from "../../sidecar/src/policy/validate.ts";
import { policySecretKeys } from "./policies.ts";

export type ReadyReason = "Valid" | "Invalid" | "SecretNotFound" | "SecretKeyMissing";

export interface Evaluation {
  ready: boolean;
  reason: ReadyReason;
  message: string;
}

/** Keys of a Secret in the policy's namespace, or undefined if there is no such Secret. */
export type SecretKeysLookup = (name: string) => readonly string[] | undefined;

const MAX_MESSAGE = 2000;

function clip(problems: readonly string[]): string {
  const text = problems.join("; ");
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE - 1)}…` : text;
}

export function evaluatePolicy(policy: AgentAccessPolicy, secretKeys: SecretKeysLookup): Evaluation {
  const invalid = validatePolicy(policy);
  if (invalid.length)
    return {
      ready: false,
      reason: "Invalid",
      message: clip(invalid.map((p) => `${p.path}: ${p.message}`)),
    };
  const missingSecrets: string[] = [];
  const missingKeys: string[] = [];
  const ns = policy.metadata.namespace ?? "default";
  const seen = new Set<string>();
  for (const ref of policySecretKeys(policy)) {
    const id = `${ref.connection}/${ref.secret}/${ref.key ?? ""}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const keys = secretKeys(ref.secret);
    if (keys === undefined)
      missingSecrets.push(
        `connection ${ref.connection}: Secret ${ref.secret} not found in namespace ${ns} (${ref.field})`,
      );
    else if (ref.key !== undefined && !keys.includes(ref.key))
      missingKeys.push(
        `connection ${ref.connection}: Secret ${ref.secret} has no key "${ref.key}" (${ref.field}); ` +
          `its keys: ${keys.length ? [...keys].sort().join(", ") : "none"}`,
      );
  }
  if (missingSecrets.length) return { ready: false, reason: "SecretNotFound", message: clip(missingSecrets) };
  if (missingKeys.length) return { ready: false, reason: "SecretKeyMissing", message: clip(missingKeys) };
  const spec = policy.spec;
  const secrets = [...new Set(policySecretKeys(policy).map((r) => r.secret))].sort();
  return {
    ready: true,
    reason: "Valid",
    message:
      `${spec.connections.length} connection(s), ${spec.rules.length} rule(s)` +
      (secrets.length ? `; Secrets present: ${secrets.join(", ")}` : ""),
  };
}

type Condition = NonNullable<AgentAccessPolicyStatus["conditions"]>[number];

/**
 * The status to write for an evaluation. lastTransitionTime moves only when the Ready status
 * flips, as the Kubernetes API conventions ask.
 */
export function desiredStatus(
  policy: AgentAccessPolicy,
  evaluation: Evaluation,
  now: Date = new Date(),
): AgentAccessPolicyStatus {
  const generation = policy.metadata.generation;
  const previous = policy.status?.conditions?.find((c) => c.type === "Ready");
  const status: Condition["status"] = evaluation.ready ? "True" : "False";
  const ready: Condition = {
    type: "Ready",
    status,
    reason: evaluation.reason,
    message: evaluation.message,
    lastTransitionTime:
      previous && previous.status === status
        ? previous.lastTransitionTime
        : now.toISOString().replace(/\.\d{3}Z$/, "Z"),
  };
  if (generation !== undefined) ready.observedGeneration = generation;
  const others = (policy.status?.conditions ?? []).filter((c) => c.type !== "Ready");
  const names = (policy.spec?.connections ?? []).map((c) => c.name).join(",");
  const out: AgentAccessPolicyStatus = {
    ...(policy.status ?? {}),
    connections: names.length > 2048 ? `${names.slice(0, 2047)}…` : names,
    rules: policy.spec?.rules?.length ?? 0,
    conditions: [...others, ready],
  };
  if (generation !== undefined) out.observedGeneration = generation;
  return out;
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) =>
    value && typeof value === "object" && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).sort(([a], [b]) => a.localeCompare(b)))
      : value,
  );
}

export function statusEqual(a: AgentAccessPolicyStatus | undefined, b: AgentAccessPolicyStatus): boolean {
  return canonical(a ?? {}) === canonical(b);
}
