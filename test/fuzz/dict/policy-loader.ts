// Dictionary of the policy-loader target: every field name and enum value of the CRD schema, so
// mutations spell fields the validator and compiler know (derived, so it never goes stale).
import { AgentAccessPolicySpec } from "../../../api/src/index.ts";

function collect(schema: unknown, keys: Set<string>, values: Set<string>): void {
  if (typeof schema !== "object" || schema === null) return;
  if (Array.isArray(schema)) {
    for (const s of schema) collect(s, keys, values);
    return;
  }
  const s = schema as { properties?: Record<string, unknown>; const?: unknown; enum?: unknown };
  for (const k of Object.keys(s.properties ?? {})) keys.add(`${k}: `);
  if (typeof s.const === "string") values.add(s.const);
  if (Array.isArray(s.enum)) for (const e of s.enum) if (typeof e === "string") values.add(e);
  for (const v of Object.values(s)) collect(v, keys, values);
}

const keys = new Set<string>();
const values = new Set<string>();
collect(AgentAccessPolicySpec, keys, values);
export const words = [
  ...keys,
  ...values,
  "apiVersion: airlock.dev/v1alpha1",
  "kind: AgentAccessPolicy",
  "metadata: ",
  "namespace: ",
  "spec: ",
  "---\n",
  "&a ",
  "*a",
  "!!str ",
];
