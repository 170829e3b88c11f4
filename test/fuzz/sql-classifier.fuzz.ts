// Fuzz target: the SQL classifier (sidecar/src/sql/classify.ts). The first input byte picks the
// grammar line (PostgreSQL 15, 16, 17, 18), the rest is the SQL text. Invariants:
//  - classifySync never throws; with the text, shape and numeric-shape caches it returns exactly
//    what an uncached classification returns (classifyFresh).
//  - Fail closed: a text the same grammar does not parse is an error, never statements.
//  - Read means read: when every entry (top-level and nested) is a read kind and nothing is
//    denied, an independent walk of libpg-query's tree (readOnly below) finds no statement that
//    writes, no data-modifying CTE, no SELECT INTO, no row locks, no COPY FROM or to a file.
//  - Another split agrees: each top-level statement, classified alone (cut at the parser's own
//    statement boundaries), gets the kind it got in the whole text, and is a read exactly when
//    it was one there.

import type { Classification } from "../../sidecar/src/sql/index.ts";
import {
  classifyFresh,
  classifySync,
  loadSqlParser,
  parserFor,
  SUPPORTED_MAJORS,
} from "../../sidecar/src/sql/index.ts";
import { check, fail } from "./support/invariant.ts";

await loadSqlParser();
const parsers = await Promise.all(SUPPORTED_MAJORS.map((m) => parserFor(`${m}.0`)));

const READ_KINDS = new Set(["select", "show", "copyTo", "explain", "housekeeping"]);

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

/** Node types (anywhere in a tree) that make a statement change data or take row locks. */
const WRITE_NODES = new Set(["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"]);

function findKey(tree: unknown, pred: (key: string, value: unknown) => boolean): string | undefined {
  if (Array.isArray(tree)) {
    for (const v of tree) {
      const f = findKey(v, pred);
      if (f) return f;
    }
    return undefined;
  }
  if (!isObj(tree)) return undefined;
  for (const [k, v] of Object.entries(tree)) {
    if (pred(k, v)) return k;
    const f = findKey(v, pred);
    if (f) return f;
  }
  return undefined;
}

const writes = (tree: unknown) =>
  findKey(
    tree,
    (k, v) =>
      WRITE_NODES.has(k) ||
      (k === "intoClause" && isObj(v)) ||
      (k === "lockingClause" && Array.isArray(v) && v.length > 0),
  );

const analyzes = (options: unknown) =>
  Array.isArray(options) &&
  options.some((o) => isObj(o) && isObj(o.DefElem) && String(o.DefElem.defname).toLowerCase() === "analyze");

/** Why a top-level statement node is not a plain read, or undefined when it is one. */
function notRead(stmt: Json): string | undefined {
  const [type, body] = Object.entries(stmt)[0] ?? [];
  if (!type || !isObj(body)) return `unknown node ${type}`;
  switch (type) {
    case "SelectStmt":
      return writes(body);
    case "VariableShowStmt":
    case "ClosePortalStmt":
    case "DeallocateStmt":
    case "DiscardStmt":
    case "UnlistenStmt":
    case "FetchStmt":
      return undefined;
    case "VariableSetStmt":
      return body.kind === "VAR_RESET_ALL" || body.kind === "VAR_RESET" ? undefined : "SET";
    case "LockStmt":
      return Number(body.mode ?? 0) === 1 ? undefined : "LOCK";
    case "ExplainStmt":
      // Plain EXPLAIN plans without executing; EXPLAIN ANALYZE runs its statement.
      return analyzes(body.options) && isObj(body.query) ? notRead(body.query) : undefined;
    case "CopyStmt":
      if (body.is_from) return "COPY FROM";
      if (body.filename !== undefined || body.is_program) return "COPY TO a file or program";
      return isObj(body.query) ? notRead(body.query) : undefined;
    case "DeclareCursorStmt":
      return isObj(body.query) ? notRead(body.query) : undefined;
    case "PrepareStmt":
      // PREPARE is judged as the statement it prepares (EXECUTE then replays that judgement).
      return isObj(body.query) ? notRead(body.query) : "PREPARE without a statement";
    default:
      return type;
  }
}

const allRead = (c: Classification) =>
  c.errors.length === 0 && c.denials.length === 0 && c.statements.every((s) => READ_KINDS.has(s.kind));

function topLevel(c: Classification) {
  return c.statements.filter((s) => s.nested === undefined);
}

export function fuzz(data: Buffer): void {
  if (data.length < 1) return;
  const parser = parsers[(data[0] as number) % parsers.length] as (typeof parsers)[number];
  const text = data.subarray(1).toString("utf8");
  const c = classifySync(text, parser);
  const fresh = classifyFresh(text, parser);
  check(JSON.stringify(c) === JSON.stringify(fresh), "the cached classification differs from a fresh one", {
    major: parser.major,
    text,
    cached: c,
    fresh,
  });

  let tree: { stmts?: { stmt?: Json; stmt_location?: number; stmt_len?: number }[] };
  try {
    // libpg-query refuses "" itself; PostgreSQL answers it as an empty query, as it does ";".
    tree = text === "" ? { stmts: [] } : (parser.parseSync(text) as typeof tree);
  } catch {
    check(c.errors.length > 0, "a text the parser rejects was classified", { major: parser.major, text, c });
    return;
  }
  if (c.errors.length > 0) return; // refused: fail closed, nothing more to hold
  const stmts = tree.stmts ?? [];
  const tops = topLevel(c);
  check(tops.length === stmts.length, "top-level statements differ from the parser's", {
    major: parser.major,
    text,
    parser: stmts.length,
    classifier: tops.map((s) => s.kind),
  });

  if (allRead(c)) {
    for (const s of stmts) {
      const why = isObj(s.stmt) ? notRead(s.stmt) : "no statement";
      if (why) fail("classified as a read, but the tree writes", { major: parser.major, text, why, c });
    }
  }

  if (stmts.length < 2) return;
  const bytes = Buffer.from(text, "utf8");
  stmts.forEach((s, i) => {
    const start = Number(s.stmt_location ?? 0);
    const end =
      s.stmt_len === undefined || Number(s.stmt_len) === 0 ? bytes.length : start + Number(s.stmt_len);
    const piece = bytes.subarray(start, end).toString("utf8");
    const alone = classifySync(piece, parser);
    const whole = tops[i];
    if (alone.errors.length > 0)
      fail("a statement of a parsed text is refused alone", { major: parser.major, text, piece, alone });
    const aloneTops = topLevel(alone);
    check(
      aloneTops.length === 1 && aloneTops[0]?.kind === whole?.kind,
      "a statement classifies differently alone",
      {
        major: parser.major,
        text,
        piece,
        whole: whole?.kind,
        alone: aloneTops.map((t) => t.kind),
      },
    );
    const wholeEntries: Classification = {
      statements: c.statements.filter((e) => e.index === i),
      errors: [],
      denials: c.denials.filter((d) => d.statement === i),
    };
    check(
      allRead(alone) === allRead(wholeEntries),
      "a statement is a read alone but not in the whole text, or the reverse",
      {
        major: parser.major,
        text,
        piece,
        alone,
        whole: wholeEntries,
      },
    );
  });
}
