// Durations as the CRDs write them (30s, 5m, 1h30m, 250ms) → milliseconds.
import { DURATION_PATTERN } from "./schema-kit.ts";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const pattern = new RegExp(DURATION_PATTERN);

export function parseDuration(text: string): number {
  if (!pattern.test(text))
    throw new Error(`${JSON.stringify(text)} is not a duration such as 30s, 5m or 1h30m`);
  let total = 0;
  for (const [, n, unit] of text.matchAll(/([0-9.]+)(ms|s|m|h)/g))
    total += Number(n) * (UNIT_MS[unit as string] ?? 0);
  return total;
}
