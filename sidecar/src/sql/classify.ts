// Classifies SQL text with the real PostgreSQL parser (libpg-query, WASM) into the statements the
// policy engine judges: the entry points and their caches here, the parse-tree walk in walker.ts,
// the shapes in classification.ts. Every decision leans towards "more restrictive":
//
// - Every statement of a multi-statement string is classified; text that does not parse yields
//   an error and no statements, which the guard turns into a denial (fail closed).
// - Data-modifying statements nested anywhere (a `WITH d AS (DELETE ...) SELECT`, `COPY (DELETE
//   ... RETURNING *) TO STDOUT`, `CREATE TABLE AS WITH ... INSERT`) add an entry of their own
//   kind with the tables they touch, so `WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d`
//   is judged as a select *and* a delete: an allow rule must cover both, a deny rule on deletes
//   catches it.
// - `SELECT ... FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE` adds an `update` entry on every table
//   the SELECT reads, mirroring PostgreSQL, which requires UPDATE privilege for row locks (and
//   refuses them in read-only transactions). Row locks block writers, so read-only rules must
//   not allow them.
// - `nextval(...)` adds an `update` entry on the sequence it names (`(dynamic)` when the name is
//   not a literal): it writes. `setval` is always denied.
// - `EXPLAIN ANALYZE <stmt>` executes <stmt> and is classified as <stmt>. Plain `EXPLAIN` of a
//   read is `explain` (tables and functions of the inner statement, nothing nested executes);
//   plain `EXPLAIN` of anything else keeps the inner kind, as the `read` shorthand promises.
// - `PREPARE p AS <stmt>` is classified as <stmt> (so permission is needed when preparing) and
//   `EXECUTE p` carries `effect: {kind: "execute"}`: the guard substitutes what it recorded at
//   PREPARE time and refuses unknown names. `DECLARE c CURSOR FOR <q>` is classified as <q>.
// - `DO` and `CALL` are opaque (their bodies are not judged): kinds `do`/`call`. The guard only
//   lets them through an allow rule that names the kind explicitly. DO bodies are scanned for
//   always-denied function names as a best effort.
// - Built-in denials (deny-list.ts) are reported in `denials` whatever the rules say: denied
//   functions anywhere (including inside EXPLAIN, PREPARE, CTEs, defaults of DDL), guarded
//   settings (SET/RESET, ALTER ROLE/DATABASE ... SET, SET TRANSACTION/BEGIN ... READ WRITE),
//   `COPY ... PROGRAM`, `COPY` to or from a server file, `ALTER SYSTEM`, `LOAD`.
//
// Names: tables are `schema.table` when qualified, `table` otherwise. An identifier that is not
// plain lower-case (it was quoted: `"Orders"`, `"a.b"`) is rendered with its double quotes so it
// never matches a rule written for the lower-case name. Function names are as written
// (`pg_catalog.pg_sleep`); the deny-list looks at the bare name.

import { isObj } from "./ast.ts";
import type { BuiltinDenial, Classification, ClassifiedStatement } from "./classification.ts";
import { fingerprintSync, loadModule, parseSync } from "./libpg-query.ts";
import { type NumericShape, numericShape } from "./literals.ts";
import { Lru } from "./lru.ts";
import type { SqlParser } from "./parser.ts";
import { recordLiterals, Walker } from "./walker.ts";

let loading: Promise<void> | undefined;
let ready = false;

/** Loads the WASM parser once; call (and await) before `classifySync`. */
export function loadSqlParser(): Promise<void> {
  loading ??= loadModule().then(() => {
    ready = true;
  });
  return loading;
}

export function sqlParserReady(): boolean {
  return ready;
}

const CACHE_MAX_ENTRIES = 4096;
const CACHE_MAX_TEXT = 64 * 1024;
const cache = new Lru<string, Classification>(CACHE_MAX_ENTRIES);
const shapeCache = new Lru<string, Classification>(CACHE_MAX_ENTRIES);
/** Caches of the other grammars (parser.ts), per major: a text may mean different things in each. */
const otherCaches = new Map<
  number,
  { cache: Lru<string, Classification>; shapeCache: Lru<string, Classification> }
>();

function cachesFor(parser: SqlParser | undefined) {
  if (!parser) return { cache, shapeCache };
  let c = otherCaches.get(parser.major);
  if (!c) {
    c = { cache: new Lru(CACHE_MAX_ENTRIES), shapeCache: new Lru(CACHE_MAX_ENTRIES) };
    otherCaches.set(parser.major, c);
  }
  return c;
}

export function classificationCacheStats(): {
  size: number;
  hits: number;
  misses: number;
  shapeSize: number;
  shapeHits: number;
} {
  return {
    size: cache.size,
    hits: cache.hits,
    misses: cache.misses,
    shapeSize: shapeCache.size,
    shapeHits: shapeCache.hits,
  };
}

/** Classifies `text`, loading the parser on first use. */
export async function classify(text: string): Promise<Classification> {
  await loadSqlParser();
  return classifySync(text);
}

/**
 * Classifies `text` with the parser already loaded (see `loadSqlParser`). Results are cached by
 * exact text and by numeric shape (literals.ts), LRU, frozen and shared: do not mutate them.
 * `parser` (parser.ts) parses with the grammar of the upstream's major; without it, the newest.
 */
export function classifySync(text: string, parser?: SqlParser): Classification {
  if (!ready) return failed("the SQL parser is not loaded");
  const cacheable = text.length <= CACHE_MAX_TEXT;
  if (!cacheable) return deepFreeze(classifyUncached(text, parser).result);
  const { cache, shapeCache } = cachesFor(parser);
  // Same text up to its numeric literals, classified without reading any literal: same result.
  // Looked up first: texts that vary only in numbers (most generated SQL) never repeat exactly.
  const shape = numericShape(text);
  if (shape !== undefined) {
    const same = shapeCache.get(shape.key);
    if (same) return same;
  }
  const hit = cache.get(text);
  if (hit) return hit;
  const { result, readLiterals, constants } = classifyUncached(text, parser);
  deepFreeze(result);
  cache.set(text, result);
  if (
    shape !== undefined &&
    !readLiterals &&
    result.errors.length === 0 &&
    shapeSound(text, shape, constants)
  )
    shapeCache.set(shape.key, result);
  return result;
}

function failed(message: string): Classification {
  return { statements: [], errors: [message], error: message, denials: [] };
}

function classifyUncached(
  text: string,
  parser: SqlParser | undefined,
): {
  result: Classification;
  readLiterals: boolean;
  constants: ReadonlySet<number>;
} {
  const read = recordLiterals();
  const result = classifyTree(text, parser ? (t) => parser.parseSync(t) : parseSync);
  return { result, ...read() };
}

const NOT_PLAIN_ASCII = /[^\t\n\r -~]/;
const MINUS_GAP = /^-\s*$/;

/**
 * Whether every literal the shape replaced is a numeric A_Const of the tree (at its location, or
 * at the `-` PostgreSQL folds into a negative constant): then every text with this shape
 * classifies the same (literals.ts). ASCII only, so that string indexes are the parser's byte
 * offsets.
 */
function shapeSound(text: string, shape: NumericShape, constants: ReadonlySet<number>): boolean {
  if (NOT_PLAIN_ASCII.test(text)) return false;
  for (const p of shape.at) {
    if (constants.has(p)) continue;
    let q = p - 1;
    while (q >= 0 && /\s/.test(text.charAt(q))) q--;
    if (q >= 0 && constants.has(q) && MINUS_GAP.test(text.slice(q, p))) continue;
    return false;
  }
  return true;
}

/**
 * Classification without either cache, for differential tests of the caches (and nothing else:
 * it parses every time).
 */
export function classifyFresh(text: string, parser?: SqlParser): Classification {
  if (!ready) return failed("the SQL parser is not loaded");
  return deepFreeze(classifyUncached(text, parser).result);
}

function classifyTree(text: string, parse: (text: string) => unknown): Classification {
  if (text.length === 0) return { statements: [], errors: [], denials: [] };
  let tree: { stmts?: unknown };
  try {
    tree = parse(text) as { stmts?: unknown };
  } catch (err) {
    return failed(`statement does not parse: ${err instanceof Error ? err.message : String(err)}`);
  }
  const stmts = Array.isArray(tree.stmts) ? tree.stmts : [];
  const bytes = stmts.length > 1 ? Buffer.from(text, "utf8") : undefined;
  const statements: ClassifiedStatement[] = [];
  const denials: BuiltinDenial[] = [];
  try {
    stmts.forEach((raw, index) => {
      if (!isObj(raw) || !isObj(raw.stmt)) throw new Error("unexpected parse tree shape");
      const slice = bytes
        ? bytes
            .subarray(
              Number(raw.stmt_location ?? 0),
              raw.stmt_len === undefined ? undefined : Number(raw.stmt_location ?? 0) + Number(raw.stmt_len),
            )
            .toString("utf8")
        : text;
      const walker = new Walker(index);
      const top = walker.top(raw.stmt);
      const fingerprint = fingerprintOf(slice);
      statements.push({
        kind: top.kind,
        tables: [...top.collect.tables],
        ...top.collect.facts(),
        fingerprint,
        index,
        ...(top.effect ? { effect: top.effect } : {}),
      });
      for (const n of walker.nested) {
        statements.push({
          kind: n.kind,
          tables: [...n.collect.tables],
          ...n.collect.facts(),
          fingerprint,
          index,
          nested: n.nested,
        });
      }
      denials.push(...walker.denials);
    });
  } catch (err) {
    // A tree we cannot walk (unexpected shape, or nesting deep enough to exhaust the stack) is
    // refused like text that does not parse.
    return failed(`statement could not be classified: ${err instanceof Error ? err.message : String(err)}`);
  }
  return { statements, errors: [], denials };
}

/**
 * Where each top-level statement of `text` starts and ends (string indexes; a statement's span
 * starts right after the previous `;`, so it includes leading comments). Empty when the text
 * does not parse. Parses again: meant for rare paths (approval summaries), not per statement.
 */
export function statementSpans(text: string): { start: number; end: number }[] {
  if (!ready) return [];
  let tree: { stmts?: unknown };
  try {
    tree = parseSync(text) as { stmts?: unknown };
  } catch {
    return [];
  }
  const stmts = Array.isArray(tree.stmts) ? tree.stmts : [];
  const bytes = Buffer.from(text, "utf8");
  const index = (byte: number) => bytes.subarray(0, byte).toString("utf8").length;
  return stmts.map((raw: unknown) => {
    const r = isObj(raw) ? raw : {};
    const start = Number(r.stmt_location ?? 0);
    const end =
      r.stmt_len === undefined || Number(r.stmt_len) === 0 ? bytes.length : start + Number(r.stmt_len);
    return { start: index(start), end: index(end) };
  });
}

function fingerprintOf(text: string): string {
  try {
    return fingerprintSync(text);
  } catch {
    return "unknown";
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** LOCKMODE AccessShareLock (lockdefs.h). */
export function builtinRefusal(c: Classification): string | undefined {
  if (c.errors.length) return c.errors.join("; ");
  const d = c.denials[0];
  if (d) return `${d.what} is always denied: ${d.reason}`;
  return undefined;
}
