// What an approver sees for a SQL text: every statement with its kinds, tables, functions
// (those the catalog found it calls, when judged with one) and fingerprint, each with an
// excerpt of its own text; and the whole text with head and tail kept and the elision marked.
// Every statement that is not a plain read is listed whatever the size limits, so a write
// cannot hide behind a long comment or many harmless statements (`SELECT 1; /* 1 MiB */ DELETE
// FROM orders WHERE id = 4` shows the DELETE, its table and its text).
import type { ClassificationCalls } from "./catalog-judge.ts";
import type { Classification } from "./classification.ts";
import { statementSpans } from "./classify.ts";

export interface StatementSummary {
  /** 1-based position in the text. */
  position: number;
  /** The statement's kind first, then kinds nested in it (a CTE's DELETE, row locks). */
  kinds: readonly string[];
  tables: readonly string[];
  functions: readonly string[];
  fingerprint: string;
  /** The statement's text (leading comments dropped), head and tail kept when long. */
  excerpt: string;
}

export interface ApprovalSummary {
  statements: readonly StatementSummary[];
  /** Statements of read kinds left out of `statements` (beyond `maxStatements`). */
  omittedReads: number;
  /** The whole text, head and tail kept, elision marked with what it hides. */
  text: string;
}

export interface SummaryLimits {
  /** Characters of `text` (default 4096). */
  maxChars?: number;
  /** Characters of each statement's excerpt (default 512). */
  maxExcerpt?: number;
  /** Read statements listed at most (default 50); others are always listed. */
  maxStatements?: number;
}

const READS = new Set(["select", "show", "explain", "copyTo"]);

/**
 * `s` cut to about `max` characters keeping head and tail, with the elision marked; `note` says
 * what the elided range [from, to) holds.
 */
export function elide(s: string, max: number, note?: (from: number, to: number) => string): string {
  if (s.length <= max) return s;
  const marker = (from: number, to: number) =>
    ` … [${to - from} characters elided${note ? `: ${note(from, to)}` : ""}] … `;
  const room = Math.max(0, max - marker(0, s.length).length);
  const head = Math.ceil(room / 2);
  const tail = room - head;
  return `${s.slice(0, head)}${marker(head, s.length - tail)}${s.slice(s.length - tail)}`;
}

const LEADING = /^(?:\s+|--[^\n]*(?:\n|$))+/;

/** The statement without leading whitespace and comments (nested block comments too). */
function withoutLeadingComments(s: string): string {
  let out = s;
  for (;;) {
    out = out.replace(LEADING, "");
    if (!out.startsWith("/*")) return out;
    let depth = 0;
    let i = 0;
    while (i < out.length) {
      if (out.startsWith("/*", i)) {
        depth++;
        i += 2;
      } else if (out.startsWith("*/", i)) {
        depth--;
        i += 2;
        if (depth === 0) break;
      } else i++;
    }
    out = out.slice(i);
  }
}

export function approvalSummary(
  text: string,
  classification: Classification,
  opts: SummaryLimits & { calls?: ClassificationCalls } = {},
): ApprovalSummary {
  const maxChars = opts.maxChars ?? 4096;
  const maxExcerpt = opts.maxExcerpt ?? 512;
  const maxStatements = opts.maxStatements ?? 50;
  const spans = statementSpans(text);
  const byIndex = new Map<number, StatementSummary>();
  classification.statements.forEach((s, i) => {
    const called = opts.calls?.statements[i]?.calls.map((c) => c.function) ?? [];
    const known = byIndex.get(s.index);
    if (known) {
      byIndex.set(s.index, {
        ...known,
        kinds: [...new Set([...known.kinds, s.kind])],
        tables: [...new Set([...known.tables, ...s.tables])],
        functions: [...new Set([...known.functions, ...s.functions, ...called])],
      });
      return;
    }
    const span = spans[s.index];
    const own = span ? text.slice(span.start, span.end) : text;
    byIndex.set(s.index, {
      position: s.index + 1,
      kinds: [s.kind],
      tables: [...s.tables],
      functions: [...new Set([...s.functions, ...called])],
      fingerprint: s.fingerprint,
      excerpt: elide(withoutLeadingComments(own).trim(), maxExcerpt),
    });
  });
  const statements: StatementSummary[] = [];
  let reads = 0;
  let omittedReads = 0;
  for (const s of [...byIndex.values()].sort((a, b) => a.position - b.position)) {
    const read = s.kinds.every((k) => READS.has(k));
    if (read && reads >= maxStatements) {
      omittedReads++;
      continue;
    }
    if (read) reads++;
    statements.push(s);
  }
  const note = (from: number, to: number) => {
    const hidden = spans.flatMap((sp, i) => (sp.start < to && sp.end > from ? [i + 1] : []));
    if (hidden.length === 0) return "comments or whitespace between statements";
    const kinds = [...new Set(hidden.flatMap((p) => byIndex.get(p - 1)?.kinds ?? []))];
    const where = hidden.length === 1 ? `statement ${hidden[0]}` : `statements ${hidden[0]}–${hidden.at(-1)}`;
    return `${where}: ${kinds.join(", ")}`;
  };
  return { statements, omittedReads, text: elide(text, maxChars, note) };
}

// Characters a display does not show as themselves: controls (a carriage return makes
// `WHERE id = 1 -- \r OR true`, which PostgreSQL runs as `WHERE id = 1 OR true`, look commented
// out), format characters (bidi overrides reorder what follows; zero-width characters hide), line
// and paragraph separators (PostgreSQL does not end a `--` comment there; a display does).
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

/** `text` with every character a display would hide or reinterpret written as `\u{XXXX}` (newlines and tabs kept). */
export function visibleText(text: string): string {
  return text.replace(INVISIBLE, (c) =>
    c === "\n" || c === "\t" ? c : `\\u{${(c.codePointAt(0) ?? 0).toString(16).toUpperCase()}}`,
  );
}
