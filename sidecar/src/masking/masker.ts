// The masker: policy masking rules compiled once, applied to values. It knows nothing about the
// protocol a value came from; callers hand it text, parsed JSON or a SQL column value.
//
// Rule semantics (as the AgentAccessPolicy CRD documents them):
//   detectors → run over every text value (plain text, JSON strings and numbers, column values);
//   fields    → JSON paths whose values are masked whole, whatever they contain;
//   columns   → SQL result columns (case-insensitive) masked whole.
// A value selected by a field/column rule is masked by the first such rule and not scanned further.
// When several rules list the same detector, the first rule in the list decides its strategy.
import type { CountryCode } from "libphonenumber-js";
import { compileDetectors, createDetectors } from "./detectors/index.ts";
import type { Detector, DetectorGroup, DetectorId, FindHint, Finding } from "./detectors/types.ts";
import { DETECTOR_IDS, expandDetectorName, isDetectorName } from "./detectors/types.ts";
import { isRawJson } from "./json.ts";
import { compilePaths, formatPath, type JsonPath, type PathKey, parseJsonPath } from "./json-path.ts";
import { applyStrategy, assertHashKey, STRATEGIES, type Strategy } from "./strategies.ts";

export interface MaskingRule {
  name: string;
  /** Detector ids, or groups ("all", "secrets"). */
  detectors?: readonly (DetectorId | DetectorGroup)[];
  /** JSON paths: $.user.email, $.items[*].ssn, $..password. */
  fields?: readonly string[];
  /** SQL column names, case-insensitive. */
  columns?: readonly string[];
  strategy: Strategy;
}

export interface MaskerConfig {
  rules: readonly MaskingRule[];
  /** HMAC key for the hash strategy (see loadOrCreateHashKey). */
  hashKey: Buffer;
  /** Country for phone numbers written without a country code. Default "US". */
  phoneDefaultCountry?: CountryCode;
}

/** What was masked and by which rule. Never the value: paths, detector ids and rule names only. */
export interface MaskFinding {
  /** Detector id, or "field"/"column" for whole-value masks. */
  detector: DetectorId | "field" | "column";
  /** Which kind the detector found, when it tells (a catalogue rule id such as "stripe-access-token", a card network). */
  family?: string;
  rule: string;
  /** JSONPath of the masked JSON value, e.g. $.items[0].ssn. */
  path?: string;
  /** Column of the masked SQL value, as the caller named it. */
  column?: string;
}

export interface MaskTextResult {
  text: string;
  findings: MaskFinding[];
}

export interface MaskJsonResult {
  value: unknown;
  findings: MaskFinding[];
}

export interface MaskColumnResult {
  value: string;
  findings: MaskFinding[];
}

export interface Masker {
  maskText(text: string): MaskTextResult;
  /** A masked copy of `value` (the input is not modified; unchanged subtrees are shared). */
  maskJson(value: unknown): MaskJsonResult;
  /**
   * `derived`: the value is computed from the covered column (or may be), not the column itself.
   * `partial` keeps part of a value, and pieces of one (`substr(card, 1, 4)`) would rebuild it, so
   * a derived value is redacted whole whatever the rule's strategy; `hash` stays (it keeps only
   * equality).
   */
  maskColumn(columnName: string, value: string, opts?: { derived?: boolean }): MaskColumnResult;
  hasRules(): boolean;
  /** Detector ids that run over text, in DETECTOR_IDS order. */
  readonly textDetectors: readonly DetectorId[];
  /** Longest span (with context) any text detector except privateKey looks at. */
  readonly textWindow: number;
  /** Most already-released text a stream must keep for the detectors' look-behind (labels). */
  readonly textLookBehind: number;
  /**
   * Where a value may still be in the making at the end of `text` (see Detector.pendingFrom):
   * text before the offset returned is decided, whatever follows.
   */
  holdFrom(text: string): number;
  /** Lower level, for stream masking: findings of the text detectors, and applying them. */
  detect(text: string, hint?: FindHint): Finding[];
  apply(text: string, findings: readonly Finding[]): MaskTextResult;
  /**
   * False when no text detector can find anything in the UTF-8 text `bytes[start, end)` (see
   * Detector.mayOccurIn): the value needs no decoding or scanning. Column rules are not
   * consulted: they mask by name, whatever the content.
   */
  mayDetect(bytes: Uint8Array, start: number, end: number): boolean;
}

/** A value could not be masked safely (e.g. JSON nested beyond MAX_JSON_DEPTH); callers fail closed. */
export class MaskingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MaskingError";
  }
}

/** Deeper JSON is refused rather than recursed into. */
export const MAX_JSON_DEPTH = 1000;

interface CompiledRule {
  name: string;
  strategy: Strategy;
}

function compileRules(rules: readonly MaskingRule[]) {
  const byDetector = new Map<DetectorId, CompiledRule>();
  const fieldPaths: JsonPath[] = [];
  const fieldRules: CompiledRule[] = [];
  const columnRules = new Map<string, CompiledRule>();
  for (const [i, r] of rules.entries()) {
    const where = `masking rule ${JSON.stringify(r.name ?? `#${i}`)}`;
    if (typeof r.name !== "string" || r.name === "") throw new Error(`masking rule #${i} needs a name`);
    // Policies read from files skip the API server's defaulting: a missing strategy is the CRD default.
    const strategy: Strategy = r.strategy ?? "redact";
    if (!(STRATEGIES as readonly string[]).includes(strategy))
      throw new Error(`${where}: unknown strategy ${JSON.stringify(strategy)}`);
    if (!r.detectors?.length && !r.fields?.length && !r.columns?.length)
      throw new Error(`${where} needs detectors, fields or columns`);
    const rule = { name: r.name, strategy };
    for (const d of r.detectors ?? []) {
      if (!isDetectorName(d)) throw new Error(`${where}: unknown detector ${JSON.stringify(d)}`);
      for (const id of expandDetectorName(d)) if (!byDetector.has(id)) byDetector.set(id, rule);
    }
    for (const f of r.fields ?? []) {
      fieldPaths.push(parseJsonPath(f));
      fieldRules.push(rule);
    }
    for (const c of r.columns ?? [])
      if (!columnRules.has(c.toLowerCase())) columnRules.set(c.toLowerCase(), rule);
  }
  return { byDetector, fields: compilePaths(fieldPaths), fieldRules, columnRules };
}

export function createMasker(config: MaskerConfig): Masker {
  assertHashKey(config.hashKey);
  const key = config.hashKey;
  const { byDetector, fields, fieldRules, columnRules } = compileRules(config.rules);
  const all = createDetectors(
    config.phoneDefaultCountry ? { phone: { defaultCountry: config.phoneDefaultCountry } } : {},
  );
  const detectors: Detector[] = DETECTOR_IDS.filter((id) => byDetector.has(id)).map(
    (id) => all.get(id) as Detector,
  );
  const textWindow = Math.max(0, ...detectors.map((d) => d.maxLength).filter(Number.isFinite));
  const set = compileDetectors(detectors);
  const textLookBehind = Math.min(
    textWindow,
    Math.max(0, ...detectors.map((d) => d.lookBehind ?? d.maxLength).filter(Number.isFinite)),
  );
  // Detectors sharing one pendingFrom (the token-shaped ones) ask it once, as far back as the
  // longest of them reaches.
  const pending = new Map<NonNullable<Detector["pendingFrom"]> | undefined, number>();
  for (const d of detectors)
    pending.set(d.pendingFrom, Math.max(pending.get(d.pendingFrom) ?? 0, d.maxLength));
  const holdFrom = (text: string): number => {
    let at = text.length;
    for (const [pendingFrom, maxLength] of pending) {
      const from = Math.max(0, text.length - maxLength);
      at = Math.min(at, pendingFrom ? pendingFrom(text, from) : from);
      if (at === 0) break;
    }
    return at;
  };

  const detect = (text: string, hint?: FindHint): Finding[] =>
    detectors.length === 0 || text.length === 0 ? [] : set.find(text, hint);

  const ruleOf = (id: DetectorId) => byDetector.get(id) as CompiledRule;

  function apply(
    text: string,
    found: readonly Finding[],
    where?: { path?: string; column?: string },
  ): MaskTextResult {
    if (found.length === 0) return { text, findings: [] };
    let out = "";
    let pos = 0;
    const findings: MaskFinding[] = [];
    for (const f of found) {
      const rule = ruleOf(f.detector);
      out +=
        text.slice(pos, f.start) + applyStrategy(rule.strategy, text.slice(f.start, f.end), key, f.detector);
      pos = f.end;
      // Assigned field by field, not spread: this runs for every masked value.
      const finding: MaskFinding =
        f.family === undefined
          ? { detector: f.detector, rule: rule.name }
          : { detector: f.detector, family: f.family, rule: rule.name };
      if (where?.path !== undefined) finding.path = where.path;
      if (where?.column !== undefined) finding.column = where.column;
      findings.push(finding);
    }
    return { text: out + text.slice(pos), findings };
  }

  // Keys are never masked, but a finding's path goes to audit logs: a key that itself looks like
  // personal data (objects keyed by email address) is shown as [REDACTED] there.
  let keyDetectors: ReturnType<typeof compileDetectors> | undefined;
  function pathOf(keys: readonly PathKey[], cache: Map<string, boolean>): string {
    return formatPath(
      keys.map((k) => {
        if (typeof k !== "string") return k;
        let sensitive = cache.get(k);
        if (sensitive === undefined) {
          keyDetectors ??= compileDetectors([...all.values()]);
          sensitive = keyDetectors.find(k).length > 0;
          cache.set(k, sensitive);
        }
        return sensitive ? "[REDACTED]" : k;
      }),
    );
  }

  function maskWhole(node: unknown, rule: CompiledRule): unknown {
    if (node === null || node === undefined) return node; // nothing to hide
    const primitive =
      typeof node === "string"
        ? node
        : typeof node === "number" || typeof node === "bigint" || typeof node === "boolean"
          ? String(node)
          : isRawJson(node)
            ? node.rawJSON
            : undefined;
    if (rule.strategy === "redact") return applyStrategy("redact", "", key);
    if (primitive !== undefined) return applyStrategy(rule.strategy, primitive, key);
    if (rule.strategy === "hash") {
      try {
        return applyStrategy("hash", JSON.stringify(node), key);
      } catch {
        return applyStrategy("redact", "", key);
      }
    }
    return applyStrategy("redact", "", key); // partial of an object or array has no "last 4"
  }

  function maskJson(value: unknown): MaskJsonResult {
    const findings: MaskFinding[] = [];
    const keyCache = new Map<string, boolean>();
    const hasFields = fields.paths.length > 0;
    const keys: PathKey[] = [];

    const walk = (node: unknown, states: readonly number[], hintKey: string | undefined): unknown => {
      if (keys.length > MAX_JSON_DEPTH)
        throw new MaskingError(`JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
      if (hasFields) {
        const m = fields.matched(states);
        const rule = m >= 0 ? fieldRules[m] : undefined;
        if (rule) {
          const masked = maskWhole(node, rule);
          if (masked !== node)
            findings.push({ detector: "field", rule: rule.name, path: pathOf(keys, keyCache) });
          return masked;
        }
      }
      if (typeof node === "string") return maskScalar(node, node, { key: hintKey }, false);
      if (typeof node === "number" || typeof node === "bigint")
        return maskScalar(node, String(node), { key: hintKey, numeric: true }, true);
      if (typeof node !== "object" || node === null) return node;
      if (isRawJson(node)) return maskScalar(node, node.rawJSON, { key: hintKey, numeric: true }, true);
      if (Array.isArray(node)) {
        let out: unknown[] | undefined;
        for (let i = 0; i < node.length; i++) {
          keys.push(i);
          const v = walk(node[i], hasFields ? fields.step(states, i) : states, hintKey);
          keys.pop();
          if (v !== node[i] && !out) out = node.slice(0, i);
          out?.push(v);
        }
        return out ?? node;
      }
      let out: Record<string, unknown> | undefined;
      const obj = node as Record<string, unknown>;
      const names = Object.keys(obj);
      for (let i = 0; i < names.length; i++) {
        const k = names[i] as string;
        const child = obj[k];
        keys.push(k);
        const v = walk(child, hasFields ? fields.step(states, k) : states, k);
        keys.pop();
        if (v !== child && !out) {
          out = {};
          for (let j = 0; j < i; j++) setOwn(out, names[j] as string, obj[names[j] as string]);
        }
        if (out) setOwn(out, k, v);
      }
      return out ?? node;
    };

    // A string is masked where detectors match; a number only when a detector matches its whole
    // decimal string (part of a number is not a card), and then it becomes a masked string.
    const maskScalar = (node: unknown, text: string, hint: FindHint, whole: boolean): unknown => {
      let found = detect(text, hint);
      if (whole) found = found.filter((f) => f.start === 0 && f.end === text.length);
      if (found.length === 0) return node;
      const r = apply(text, found, { path: pathOf(keys, keyCache) });
      findings.push(...r.findings);
      return r.text;
    };

    const masked = walk(value, fields.root, undefined);
    return { value: masked, findings };
  }

  return {
    maskText(text) {
      return apply(text, detect(text));
    },
    maskJson,
    maskColumn(columnName, value, opts) {
      const rule = columnRules.get(columnName.toLowerCase());
      if (rule)
        return {
          value: applyStrategy(
            opts?.derived && rule.strategy === "partial" ? "redact" : rule.strategy,
            value,
            key,
          ),
          findings: [{ detector: "column", rule: rule.name, column: columnName }],
        };
      const r = apply(value, detect(value, { key: columnName }), { column: columnName });
      return { value: r.text, findings: r.findings };
    },
    hasRules: () => config.rules.length > 0,
    textDetectors: detectors.map((d) => d.id),
    textWindow,
    textLookBehind,
    holdFrom,
    detect,
    apply: (text, found) => apply(text, found),
    mayDetect(bytes, start, end) {
      return end > start && set.mayOccurIn(bytes, start, end);
    },
  };
}

// `out[k] = v` with k === "__proto__" would set the prototype instead of a key.
function setOwn(out: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__")
    Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  else out[k] = v;
}
