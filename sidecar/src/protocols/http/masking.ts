// Which masking rules apply to a connection and direction, compiled once per policy version.
// Rules without `connections` apply to every connection; `direction` defaults to response.
import type { MaskingRule as PolicyMaskingRule } from "../../../../api/src/index.ts";
import { createMasker, type Masker, type MaskFinding } from "../../masking/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { MaskDirection } from "../../runtime/context.ts";

/** The masking rules of the policy that owns `connection` (any order; filtered here). */
export type MaskingRulesResolver = (connection: CompiledConnection) => readonly PolicyMaskingRule[];

/** Default resolver: the rules the policy compiler attached to the connection. */
export const compiledMaskingRules: MaskingRulesResolver = (connection) => connection.masking;

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

/** A masker, none (no rules apply), or a broken configuration (the guard then fails closed). */
export type MaskerSlot = { masker: Masker } | { masker: undefined } | { error: string };

export interface MaskerCache {
  get(connection: CompiledConnection, direction: MaskDirection): MaskerSlot;
}

export function createMaskerCache(resolve: MaskingRulesResolver, hashKey: Buffer): MaskerCache {
  // Compiled connections are replaced on every policy swap, so they key the cache by version.
  const cache = new WeakMap<CompiledConnection, Partial<Record<MaskDirection, MaskerSlot>>>();
  return {
    get(connection, direction) {
      let entry = cache.get(connection);
      if (!entry) {
        entry = {};
        cache.set(connection, entry);
      }
      const cached = entry[direction];
      if (cached) return cached;
      const rules = rulesFor(resolve(connection), connection.spec.name, direction);
      let slot: MaskerSlot;
      try {
        slot = { masker: rules.length > 0 ? createMasker({ rules, hashKey }) : undefined };
      } catch (err) {
        slot = { error: err instanceof Error ? err.message : String(err) };
      }
      entry[direction] = slot;
      return slot;
    },
  };
}

/** Findings counted by detector ("field"/"column" for path rules): what audit events carry. */
export function countByDetector(findings: readonly MaskFinding[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of findings) out[f.detector] = (out[f.detector] ?? 0) + 1;
  return out;
}
