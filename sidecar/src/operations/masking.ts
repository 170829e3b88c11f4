// Masking resolution, once for every guard: which masking rules apply to a compiled connection,
// split by direction, compiled into maskers. Compiled connections are replaced on every policy
// swap, so the cache is per policy generation by construction. Guards resolve before anything
// else happens to an operation (before any human is asked to approve it): a broken masking
// configuration refuses the operation up front rather than after an approval.
import type { MaskingRule as PolicyMaskingRule } from "../../../api/src/index.ts";
import { createMasker, type Masker, type MaskFinding } from "../masking/index.ts";
import type { CompiledConnection } from "../policy/compile.ts";

export type MaskDirection = "request" | "response";

/** A masker, none (no rules apply), or a broken configuration (the guard then fails closed). */
export type MaskerSlot = { masker: Masker } | { masker: undefined } | { error: string };

export interface ConnectionMasking {
  request: MaskerSlot;
  response: MaskerSlot;
  /** The rules that mask responses (column rules live here: the PostgreSQL guard plans by them). */
  responseRules: readonly PolicyMaskingRule[];
}

/** The rules of `rules` that apply to `connection` in `direction` (`direction` defaults to response). */
export function rulesFor(
  rules: readonly PolicyMaskingRule[],
  connection: string,
  direction: MaskDirection,
): PolicyMaskingRule[] {
  return rules.filter((r) => {
    if (r.connections?.length && !r.connections.includes(connection)) return false;
    const d = r.direction ?? "response";
    return d === "both" || d === direction;
  });
}

function slotFor(rules: readonly PolicyMaskingRule[], hashKey: Buffer): MaskerSlot {
  if (rules.length === 0) return { masker: undefined };
  try {
    return { masker: createMasker({ rules, hashKey }) };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

/** The masking of `rules` as they apply to `connection` (resolved once per connection below). */
export function resolveMasking(
  rules: readonly PolicyMaskingRule[],
  connection: string,
  hashKey: Buffer,
): ConnectionMasking {
  const responseRules = rulesFor(rules, connection, "response");
  return {
    request: slotFor(rulesFor(rules, connection, "request"), hashKey),
    response: slotFor(responseRules, hashKey),
    responseRules,
  };
}

const resolved = new WeakMap<CompiledConnection, { hashKey: Buffer; masking: ConnectionMasking }>();

/** The masking of a connection, resolved once per compiled connection (and hash key). */
export function connectionMasking(connection: CompiledConnection, hashKey: Buffer): ConnectionMasking {
  const hit = resolved.get(connection);
  if (hit && hit.hashKey === hashKey) return hit.masking;
  const masking = resolveMasking(connection.masking, connection.spec.name, hashKey);
  resolved.set(connection, { hashKey, masking });
  return masking;
}

/** Findings counted by detector ("field"/"column" for path rules): what audit events carry. */
export function countByDetector(findings: readonly MaskFinding[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of findings) out[f.detector] = (out[f.detector] ?? 0) + 1;
  return out;
}
