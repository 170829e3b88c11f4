// The JSONPath subset masking rules use: $ root, .name / ['name'] children, [n] indexes,
// * / [*] wildcards and .. recursive descent ($..password). Paths are matched while walking a
// document, one key at a time, as a small NFA, so each node costs O(active states), not
// O(depth × rules).

export type PathKey = string | number;

type Selector = { kind: "name"; name: string } | { kind: "index"; index: number } | { kind: "any" };

interface Segment {
  /** `..`: the selector may match any number of levels further down. */
  descendant: boolean;
  selector: Selector;
}

export interface JsonPath {
  readonly source: string;
  readonly segments: readonly Segment[];
}

export class JsonPathError extends Error {
  constructor(source: string, reason: string) {
    super(`invalid JSON path ${JSON.stringify(source)}: ${reason}`);
    this.name = "JsonPathError";
  }
}

const isNameChar = (ch: string) => !/[.[\]\s'"]/.test(ch);

export function parseJsonPath(source: string): JsonPath {
  if (!source.startsWith("$")) throw new JsonPathError(source, "must start with $");
  const segments: Segment[] = [];
  let i = 1;
  const fail = (reason: string): never => {
    throw new JsonPathError(source, `${reason} at offset ${i}`);
  };
  while (i < source.length) {
    let descendant = false;
    if (source.startsWith("..", i)) {
      descendant = true;
      i += 2;
    } else if (source[i] === ".") i += 1;
    else if (source[i] !== "[") fail("expected . or [");

    if (source[i] === "[") {
      const close = bracket(source, i + 1, fail);
      segments.push({ descendant, selector: close.selector });
      i = close.next;
    } else if (source[i] === "*") {
      segments.push({ descendant, selector: { kind: "any" } });
      i += 1;
    } else {
      const start = i;
      while (i < source.length && isNameChar(source[i] as string)) i++;
      if (i === start) fail("expected a name");
      segments.push({ descendant, selector: { kind: "name", name: source.slice(start, i) } });
    }
  }
  if (segments.length >= STRIDE) throw new JsonPathError(source, "too many segments");
  return { source, segments };
}

function bracket(
  source: string,
  from: number,
  fail: (r: string) => never,
): { selector: Selector; next: number } {
  const q = source[from];
  if (q === "*" && source[from + 1] === "]") return { selector: { kind: "any" }, next: from + 2 };
  if (q === "'" || q === '"') {
    let name = "";
    let i = from + 1;
    for (; i < source.length && source[i] !== q; i++) {
      if (source[i] === "\\") i++;
      if (i < source.length) name += source[i];
    }
    if (source[i] !== q || source[i + 1] !== "]") fail("unterminated quoted name");
    return { selector: { kind: "name", name }, next: i + 2 };
  }
  const m = /^(\d{1,9})\]/.exec(source.slice(from, from + 11));
  if (!m) return fail("expected *, an index or a quoted name in []");
  return { selector: { kind: "index", index: Number(m[1]) }, next: from + m[0].length };
}

function selects(s: Selector, key: PathKey): boolean {
  if (s.kind === "any") return true;
  if (s.kind === "name") return key === s.name;
  return key === s.index;
}

/**
 * A set of paths matched together. States are `path * STRIDE + segmentsConsumed`; a node matches
 * path p when its state set holds p's final state.
 */
export interface PathSet {
  readonly paths: readonly JsonPath[];
  readonly root: readonly number[];
  /** States of a child reached through `key`. */
  step(states: readonly number[], key: PathKey): number[];
  /** Index of the first path that matches exactly this node, or -1. */
  matched(states: readonly number[]): number;
}

const STRIDE = 1 << 12;

export function compilePaths(paths: readonly JsonPath[]): PathSet {
  const root = paths.map((_, p) => p * STRIDE);
  return {
    paths,
    root,
    step(states, key) {
      const out: number[] = [];
      const add = (s: number) => {
        if (!out.includes(s)) out.push(s);
      };
      for (const s of states) {
        const p = Math.floor(s / STRIDE);
        const i = s % STRIDE;
        const seg = paths[p]?.segments[i];
        if (!seg) continue; // this path already ended above; its matches do not extend down
        if (seg.descendant) add(s);
        if (selects(seg.selector, key)) add(s + 1);
      }
      return out;
    },
    matched(states) {
      let best = -1;
      for (const s of states) {
        const p = Math.floor(s / STRIDE);
        if (s % STRIDE === paths[p]?.segments.length && (best < 0 || p < best)) best = p;
      }
      return best;
    },
  };
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `$.a[0].b`, with keys that are not identifiers in brackets: `$['x-y']`. */
export function formatPath(keys: readonly PathKey[]): string {
  let out = "$";
  for (const k of keys) {
    if (typeof k === "number") out += `[${k}]`;
    else if (IDENTIFIER.test(k)) out += `.${k}`;
    else out += `['${k.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}']`;
  }
  return out;
}
