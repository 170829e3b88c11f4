// A second cache key: the statement text with its numeric literals replaced by a class marker
// (characters a query cannot contain): "\0" for an integer that fits int4, "\u0001" for a longer
// integer, "\u0002" for a decimal or exponent. `WHERE aid = 17` and `WHERE aid = 42` share a key,
// so a workload that varies only numbers is parsed once per shape.
//
// Soundness, by construction (classify.ts enforces each step before it shares a classification):
// 1. This lexer finds numeric literals exactly where PostgreSQL's does (with
//    standard_conforming_strings on, which the sidecar forces and never lets the agent change):
//    digits inside identifiers (`t1`), parameters (`$1`), strings ('', E'', U&'', $tag$...$tag$),
//    quoted identifiers and comments are left alone. Any construct it is unsure of (an
//    unterminated string or comment, `1_000`, which PostgreSQL 15 and 16 lex differently) yields
//    no key, i.e. no sharing.
// 2. Texts with the same key therefore lex to the same token sequence with the same token classes
//    (ICONST vs FCONST, which the grammar tells apart), and differ only in the values of those
//    tokens. The grammar turns a numeric token into an A_Const node, or uses its value directly
//    (`ALTER INDEX i ALTER COLUMN 1`, `float(24)`, `SET STATISTICS 5`): a classification is shared
//    only when every replaced literal is the location of a numeric A_Const of the parse tree
//    (`at`), so the trees differ only in A_Const values; the fingerprint ignores those.
// 3. Only classifications that never looked at a literal value are shared (classify.ts tracks
//    that: SET values, EXPLAIN option values, nextval names, DO bodies all read literals).

const isDigit = (c: number) => c >= 48 && c <= 57;

/** Characters that continue an identifier (PostgreSQL: letters, digits, _, $, and any non-ASCII). */
function isIdentChar(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || isDigit(c) || c === 95 || c === 36 || c >= 0x80;
}

function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 0x80;
}

/** End index (exclusive) of a quoted token starting at i (quote char q, doubled to escape), or -1. */
function skipQuoted(s: string, i: number, q: number, backslash: boolean): number {
  let j = i + 1;
  const n = s.length;
  while (j < n) {
    const c = s.charCodeAt(j);
    if (backslash && c === 92) {
      j += 2;
      continue;
    }
    if (c === q) {
      if (s.charCodeAt(j + 1) === q) {
        j += 2;
        continue;
      }
      return j + 1;
    }
    j++;
  }
  return -1;
}

export interface NumericShape {
  /** The text with each numeric literal replaced by its class marker. */
  key: string;
  /** Where each replaced literal starts (UTF-16 index; equal to the byte offset in ASCII text). */
  at: number[];
}

const INT4_MAX = 2147483647;
const MARKERS = ["\0", "\u0001", "\u0002"];

/** `text` with numeric literals replaced by class markers, or undefined (no literal, or not sure). */
export function numericShape(s: string): NumericShape | undefined {
  // A text holding a marker itself would share a key with one whose literal it stands for (fuzz
  // finding: `f(\0, 2)` answered by the entry `f(1, 2)` primed): no key, no sharing.
  if (MARKERS.some((m) => s.includes(m))) return undefined;
  const n = s.length;
  let out = "";
  const at: number[] = [];
  let last = 0;
  let replaced = false;
  let i = 0;
  while (i < n) {
    const c = s.charCodeAt(i);
    // Only - / " ' $ . and digits can start anything below: step over every other character.
    if (c !== 45 && c !== 47 && c !== 34 && c !== 39 && c !== 36 && c !== 46 && !isDigit(c)) {
      i++;
      continue;
    }
    const next = s.charCodeAt(i + 1);
    const prev = i > 0 ? s.charCodeAt(i - 1) : 32;
    if (c === 45 && next === 45) {
      // -- comment to end of line
      let j = i + 2;
      while (j < n && s.charCodeAt(j) !== 10 && s.charCodeAt(j) !== 13) j++;
      i = j;
      continue;
    }
    if (c === 47 && next === 42) {
      // /* nested */ comment
      let depth = 1;
      let j = i + 2;
      while (j < n && depth > 0) {
        const d = s.charCodeAt(j);
        if (d === 47 && s.charCodeAt(j + 1) === 42) {
          depth++;
          j += 2;
        } else if (d === 42 && s.charCodeAt(j + 1) === 47) {
          depth--;
          j += 2;
        } else j++;
      }
      if (depth > 0) return undefined;
      i = j;
      continue;
    }
    if (c === 34) {
      const j = skipQuoted(s, i, 34, false);
      if (j < 0) return undefined;
      i = j;
      continue;
    }
    if (c === 39) {
      // E'...' (backslash escapes) when E starts a token; every other string: '' only.
      const e = (prev === 69 || prev === 101) && !(i > 1 && isIdentChar(s.charCodeAt(i - 2)));
      const j = skipQuoted(s, i, 39, e);
      if (j < 0) return undefined;
      i = j;
      continue;
    }
    if (c === 36) {
      if (isIdentChar(prev)) {
        i++;
        continue;
      }
      if (isDigit(next)) {
        // $n parameter
        let j = i + 1;
        while (j < n && isDigit(s.charCodeAt(j))) j++;
        i = j;
        continue;
      }
      // $tag$ ... $tag$
      let j = i + 1;
      if (j < n && isIdentStart(s.charCodeAt(j))) {
        j++;
        while (j < n && isIdentChar(s.charCodeAt(j)) && s.charCodeAt(j) !== 36) j++;
      }
      if (s.charCodeAt(j) === 36) {
        const tag = s.slice(i, j + 1);
        const end = s.indexOf(tag, j + 1);
        if (end < 0) return undefined;
        i = end + tag.length;
        continue;
      }
      i++;
      continue;
    }
    if ((isDigit(c) || (c === 46 && isDigit(next))) && !isIdentChar(prev) && prev !== 46) {
      let j = i;
      while (j < n && (isDigit(s.charCodeAt(j)) || s.charCodeAt(j) === 95)) j++;
      if (s.charCodeAt(j) === 46 && s.charCodeAt(j + 1) !== 46) {
        j++;
        while (j < n && (isDigit(s.charCodeAt(j)) || s.charCodeAt(j) === 95)) j++;
      }
      const e = s.charCodeAt(j);
      if (e === 101 || e === 69) {
        let k = j + 1;
        if (s.charCodeAt(k) === 43 || s.charCodeAt(k) === 45) k++;
        if (isDigit(s.charCodeAt(k))) {
          while (k < n && isDigit(s.charCodeAt(k))) k++;
          j = k;
        }
      }
      // Trailing identifier characters make it something else (junk or a hex/octal literal): leave it.
      if (j < n && isIdentChar(s.charCodeAt(j))) {
        i = j;
        continue;
      }
      const token = s.slice(i, j);
      if (token.includes("_")) return undefined;
      const integer = /^[0-9]+$/.test(token);
      const marker = !integer ? "\u0002" : token.length > 10 || Number(token) > INT4_MAX ? "\u0001" : "\0";
      out += `${s.slice(last, i)}${marker}`;
      at.push(i);
      last = j;
      replaced = true;
      i = j;
      continue;
    }
    i++;
  }
  if (!replaced) return undefined;
  return { key: out + s.slice(last), at };
}
