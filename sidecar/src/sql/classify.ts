// Classifies SQL text with the real PostgreSQL parser (libpg-query, WASM) into the statements the
// policy engine judges. Every decision here leans towards "more restrictive":
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

import type { SqlKind, SqlStatement } from "../policy/types.ts";
import { isObj, type Node, str, stringList } from "./ast.ts";
import { Collect, type OperatorRef, type RoutineRef, type TypeRef } from "./collect.ts";
import {
  type CopyOut,
  copyOutOf,
  renames,
  type StoredValue,
  targetColumns,
  writtenColumns,
} from "./data-flow.ts";
import {
  DENIED_FUNCTION_NAMES,
  DENIED_FUNCTION_PREFIXES,
  deniedFunction,
  guardedSetting,
} from "./deny-list.ts";
import { fingerprintSync, loadModule, parseSync } from "./libpg-query.ts";
import { type NumericShape, numericShape } from "./literals.ts";
import { Lru } from "./lru.ts";
import type { SqlParser } from "./parser.ts";
import { pgDurationMs } from "./pg-duration.ts";
import { DML, isAdvisoryUnlockAll, setConfigCall, topKind } from "./statement-kind.ts";

/** What a statement does to the session's named objects, for the guard to track. */
export type SessionEffect =
  | { kind: "prepare"; name: string }
  | { kind: "execute"; name: string }
  /** `name` undefined: DEALLOCATE ALL. */
  | { kind: "deallocate"; name?: string }
  /** DISCARD ALL: drops prepared statements too. */
  | { kind: "discard" }
  | { kind: "declareCursor"; name: string; binary: boolean }
  /** FETCH / MOVE run the cursor's query: judge them as what was declared. */
  | { kind: "fetch"; name: string }
  /** `name` undefined: CLOSE ALL. */
  | { kind: "closeCursor"; name?: string }
  /** SET [LOCAL] / RESET statement_timeout: `ms` undefined is back to the session's default. */
  | { kind: "statementTimeout"; ms?: number; local: boolean };

export type { OperatorRef, RoutineRef, TypeRef } from "./collect.ts";
export type { CopyOut } from "./data-flow.ts";

export interface ClassifiedStatement extends SqlStatement {
  /** libpg-query fingerprint of the top-level statement (literals and layout ignored). */
  fingerprint: string;
  /**
   * Column names the statement references (lower-cased), with "*" for a whole-row reference.
   * Masking uses it for computed result columns (`upper(card_number)`, `row_to_json(c)`).
   */
  columns: readonly string[];
  /**
   * A plain top-level SELECT (no WITH, set operation, `*`, or FROM item that renames columns):
   * per output column, the columns its expression references (as `columns`). Masking then
   * taints only the output columns computed from a covered one (`count(*)` beside
   * `max(card_number)` stays readable).
   */
  targets?: readonly (readonly string[])[];
  /**
   * A set operation or a CTE column list: output columns take other names than the columns they
   * carry, and PostgreSQL describes them with no origin. Masking treats that as a whole-row
   * reference unless every relation read is a system catalog (ResultMasking).
   */
  renamesColumns?: true;
  /** COPY ... TO: what masking needs to read its rows (see copyOutOf). */
  copyOut?: CopyOut;
  /**
   * A statement that stores values in the database (INSERT, UPDATE, MERGE, CREATE TABLE AS,
   * SELECT INTO): per value, the columns it is computed from ("*" for a whole row) and the
   * column it is stored into when known (see writtenColumns). Masking cannot follow a covered
   * value stored under another name.
   */
  written?: readonly StoredValue[];
  /** 0-based position of the top-level statement in the text. */
  index: number;
  /** Functions called by name, with schema and argument count, for catalog resolution (catalog.ts). */
  routines: readonly RoutineRef[];
  /** Operators written in the text, and those implied by constructs (BETWEEN: `<=`, `>=`, ...). */
  operators: readonly OperatorRef[];
  /** Types the text casts to (`x::d`, `CAST(x AS d)`): casts to a domain run its CHECK constraints. */
  casts: readonly TypeRef[];
  /** Custom (`x.y`) settings the statement changes: SET, RESET, set_config, ALTER ROLE ... SET. */
  customSettings?: readonly string[];
  /** Present on entries derived from inside a statement (`opaque`: catalog-judge.ts). */
  nested?: "cte" | "locking" | "sequence" | "opaque";
  effect?: SessionEffect;
}

/** A construct that is always denied, whatever the rules say. */
export interface BuiltinDenial {
  /** 0-based top-level statement index. */
  statement: number;
  /** What was refused, e.g. `function pg_read_file`, `SET search_path`, `COPY ... PROGRAM`. */
  what: string;
  reason: string;
}

export interface Classification {
  statements: readonly ClassifiedStatement[];
  /** Parse failures: the text must be refused (fail closed). */
  errors: readonly string[];
  /** `errors` joined, or undefined (for `airlock policy test --sql`). */
  error?: string;
  denials: readonly BuiltinDenial[];
}

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

/** Set whenever classification reads a literal's value (see literals.ts). */
let literalsRead = false;
/** Locations of the numeric A_Const nodes met while classifying (see literals.ts). */
let numericConstants = new Set<number>();

function classifyUncached(
  text: string,
  parser: SqlParser | undefined,
): {
  result: Classification;
  readLiterals: boolean;
  constants: ReadonlySet<number>;
} {
  literalsRead = false;
  numericConstants = new Set();
  const result = classifyTree(text, parser ? (t) => parser.parseSync(t) : parseSync);
  return { result, readLiterals: literalsRead, constants: numericConstants };
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

// ---------------------------------------------------------------------------------------------

/** What SET/RESET statement_timeout does to the session (the guard ends approval waits with it). */
function statementTimeoutEffect(body: Node): SessionEffect | undefined {
  const k = str(body.kind);
  const local = body.is_local === true;
  if (k === "VAR_RESET_ALL") return { kind: "statementTimeout", local: false };
  if ((str(body.name) ?? "").toLowerCase() !== "statement_timeout") return undefined;
  if (k === "VAR_RESET" || k === "VAR_SET_DEFAULT") return { kind: "statementTimeout", local };
  if (k !== "VAR_SET_VALUE") return undefined;
  const args = Array.isArray(body.args) ? body.args : [];
  const text = constText(args[0]);
  const ms = args.length === 1 && text !== undefined ? pgDurationMs(text) : undefined;
  return ms === undefined ? undefined : { kind: "statementTimeout", ms, local };
}

/** CTE names visible at a point of the tree (innermost first). */
interface Scope {
  readonly names: ReadonlySet<string>;
  readonly parent?: Scope;
}

function inScope(scope: Scope | undefined, name: string): boolean {
  for (let s = scope; s; s = s.parent) if (s.names.has(name)) return true;
  return false;
}

const PLAIN_IDENT = /^[a-z_][a-z0-9_$]*$/;
const ident = (s: string) => (PLAIN_IDENT.test(s) ? s : `"${s.replace(/"/g, '""')}"`);

function rangeVarName(rv: Node): string {
  const parts = [str(rv.catalogname), str(rv.schemaname), str(rv.relname)].filter(
    (p): p is string => p !== undefined && p !== "",
  );
  return parts.map(ident).join(".");
}

/** The text of a literal argument (A_Const), or undefined when it is not a plain literal. */
function constText(v: unknown): string | undefined {
  literalsRead = true;
  if (!isObj(v)) return undefined;
  let node = v;
  if (isObj(node.TypeCast)) node = isObj(node.TypeCast.arg) ? node.TypeCast.arg : {};
  const c = node.A_Const;
  if (!isObj(c)) return undefined;
  if (isObj(c.sval)) return str(c.sval.sval) ?? "";
  if (isObj(c.ival)) return String(c.ival.ival ?? 0);
  if (isObj(c.fval)) return str(c.fval.fval);
  if (isObj(c.boolval)) return c.boolval.boolval ? "true" : "false";
  return undefined;
}

/** DefElem value as a boolean; undefined when not clearly one (callers fail closed). */
function defElemBool(def: Node): boolean | undefined {
  literalsRead = true;
  if (def.arg === undefined) return true;
  const arg = def.arg;
  if (isObj(arg) && isObj(arg.Boolean)) return Boolean(arg.Boolean.boolval);
  if (isObj(arg) && isObj(arg.Integer)) return Number(arg.Integer.ival ?? 0) !== 0;
  const t = isObj(arg) && isObj(arg.String) ? str(arg.String.sval) : constText(arg);
  if (t === undefined) return undefined;
  const l = t.toLowerCase();
  if (["true", "on", "1", "yes"].includes(l)) return true;
  if (["false", "off", "0", "no"].includes(l)) return false;
  return undefined;
}

/** A sequence name given to nextval as a string literal, rendered like a table name. */
function sequenceName(literal: string | undefined): string {
  if (literal === undefined) return "(dynamic)";
  if (/^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/.test(literal)) return literal.toLowerCase();
  return `"${literal.replace(/"/g, '""')}"`;
}

const DROP_RELATION_TYPES = new Set([
  "OBJECT_TABLE",
  "OBJECT_VIEW",
  "OBJECT_MATVIEW",
  "OBJECT_FOREIGN_TABLE",
  "OBJECT_SEQUENCE",
  "OBJECT_INDEX",
]);

const CURSOR_OPT_BINARY = 0x0001;

/** A_Expr kinds whose `name` is not the operator PostgreSQL calls (BETWEEN is `>=` and `<=`). */
const IMPLIED_OPERATORS: Readonly<Record<string, readonly string[]>> = {
  AEXPR_BETWEEN: [">=", "<="],
  AEXPR_NOT_BETWEEN: ["<", ">"],
  AEXPR_BETWEEN_SYM: [">=", "<="],
  AEXPR_NOT_BETWEEN_SYM: ["<", ">"],
};

/**
 * Argument count of a call as PostgreSQL matches it against `pronargs`: `count(*)` is 0, an
 * ordered-set aggregate counts its WITHIN GROUP columns; undefined (any overload) when named or
 * VARIADIC arguments make the count not plain.
 */
function callArity(body: Node): number | undefined {
  if (body.agg_star) return 0;
  if (body.func_variadic) return undefined;
  const args = Array.isArray(body.args) ? body.args : [];
  if (args.some((a) => isObj(a) && isObj(a.NamedArgExpr))) return undefined;
  const order = body.agg_within_group && Array.isArray(body.agg_order) ? body.agg_order.length : 0;
  return args.length + order;
}

const DO_SCAN = new RegExp(
  `\\b(?:${[
    ...DENIED_FUNCTION_NAMES,
    "search_path",
    "session_authorization",
    "default_transaction_read_only",
    "transaction_read_only",
    "session_replication_role",
  ].join("|")}|(?:${DENIED_FUNCTION_PREFIXES.join("|")})\\w*)\\b`,
  "i",
);

interface NestedEntry {
  kind: SqlKind;
  collect: Collect;
  nested: "cte" | "locking" | "sequence";
}

class Walker {
  readonly denials: BuiltinDenial[] = [];
  readonly nested: NestedEntry[] = [];
  readonly #index: number;
  /** Inside plain EXPLAIN: nothing nested executes, so no nested entries. */
  #inert = false;

  constructor(index: number) {
    this.#index = index;
  }

  #deny(what: string, reason: string) {
    this.denials.push({ statement: this.#index, what, reason });
  }

  top(stmt: Node): { kind: SqlKind; collect: Collect; effect?: SessionEffect } {
    const [type, body] = Object.entries(stmt)[0] ?? [];
    if (type === undefined || !isObj(body)) throw new Error("empty statement node");
    const collect = new Collect();
    switch (type) {
      case "ExplainStmt": {
        const analyze = (Array.isArray(body.options) ? body.options : []).some((o) => {
          if (!isObj(o) || !isObj(o.DefElem) || o.DefElem.defname !== "analyze") return false;
          // An ANALYZE option we cannot read counts as ANALYZE: the stricter classification.
          return defElemBool(o.DefElem) !== false;
        });
        if (!isObj(body.query)) return { kind: "explain", collect };
        if (analyze) return this.top(body.query);
        // Plain EXPLAIN executes nothing: no nested entries. EXPLAIN of a read is `explain`;
        // EXPLAIN of anything else keeps the inner kind (the schema's `read` shorthand covers
        // "explain without analyze of a read" only).
        this.#inert = true;
        const inner = this.top(body.query);
        return inner.kind === "select" && !inner.effect ? { kind: "explain", collect: inner.collect } : inner;
      }
      case "PrepareStmt": {
        const inner = isObj(body.query) ? this.top(body.query) : { kind: "other" as SqlKind, collect };
        return {
          kind: inner.kind,
          collect: inner.collect,
          effect: { kind: "prepare", name: str(body.name) ?? "" },
        };
      }
      case "DeclareCursorStmt": {
        const inner = isObj(body.query) ? this.top(body.query) : { kind: "select" as SqlKind, collect };
        const binary = (Number(body.options ?? 0) & CURSOR_OPT_BINARY) !== 0;
        return {
          kind: inner.kind,
          collect: inner.collect,
          effect: { kind: "declareCursor", name: str(body.portalname) ?? "", binary },
        };
      }
      case "ExecuteStmt":
        this.visit(body.params, undefined, collect);
        return { kind: "other", collect, effect: { kind: "execute", name: str(body.name) ?? "" } };
      case "DeallocateStmt":
        return {
          kind: "housekeeping",
          collect,
          effect: body.isall ? { kind: "deallocate" } : { kind: "deallocate", name: str(body.name) ?? "" },
        };
      case "FetchStmt":
        return { kind: "select", collect, effect: { kind: "fetch", name: str(body.portalname) ?? "" } };
      case "ClosePortalStmt": {
        const name = str(body.portalname);
        return {
          kind: "housekeeping",
          collect,
          effect: name ? { kind: "closeCursor", name } : { kind: "closeCursor" },
        };
      }
      case "DiscardStmt":
        // Every DISCARD form is a subset of DISCARD ALL, which only resets this session's state.
        return body.target === "DISCARD_ALL"
          ? { kind: "housekeeping", collect, effect: { kind: "discard" } }
          : { kind: "housekeeping", collect };
      case "UnlistenStmt":
        return { kind: "housekeeping", collect };
      case "SelectStmt":
        {
          // `SELECT set_config('name', 'value', bool)` alone is SET in function form (pg_dump's
          // first statement): judged as that SET; set_config anywhere else stays denied.
          const set = setConfigCall(constText, body);
          if (set) {
            if (set.name.includes(".")) collect.settings.add(set.name);
            // A parameter value may be anything: no value that only makes a session stricter.
            const reason = guardedSetting(set.name, [set.value ?? "\u0000(parameter)"]);
            if (reason) this.#deny(`set_config ${set.name}`, reason);
            return { kind: "set", collect };
          }
        }
        if (isAdvisoryUnlockAll(body)) {
          this.visitNode(type, body, undefined, collect, true);
          return { kind: "housekeeping", collect };
        }
        this.visitNode(type, body, undefined, collect, true);
        {
          const targets = targetColumns(body, (n) => collect.isRowSource(n));
          if (targets) collect.targets = targets;
        }
        return { kind: topKind(type, body), collect };
      case "VariableSetStmt": {
        this.visitNode(type, body, undefined, collect, true);
        // RESET goes back to the session's startup values, which the sidecar chose (read-only
        // mode included); RESET of a guarded setting is refused by #checkSet as before.
        const k = str(body.kind);
        const reset = k === "VAR_RESET_ALL" || (k === "VAR_RESET" && !(str(body.name) ?? "").includes("."));
        const timeout = statementTimeoutEffect(body);
        return { kind: reset ? "housekeeping" : "set", collect, ...(timeout ? { effect: timeout } : {}) };
      }
      default:
        this.visitNode(type, body, undefined, collect, true);
        return { kind: topKind(type, body), collect };
    }
  }

  visit(value: unknown, scope: Scope | undefined, out: Collect): void {
    if (Array.isArray(value)) {
      for (const v of value) this.visit(v, scope, out);
      return;
    }
    if (!isObj(value)) return;
    if (typeof value.aliasname === "string") out.relations.add(value.aliasname.toLowerCase());
    // FROM items: a function's alias is not a row source; a subquery's or a join's is.
    if (isObj(value.alias) && typeof value.alias.aliasname === "string") {
      const alias = value.alias.aliasname.toLowerCase();
      if (Array.isArray(value.functions)) out.functionAliases.add(alias);
      else out.rowSources.add(alias);
    }
    // A subquery's or a join's column list renames what it selects (a function's renames its
    // output, which is derived from its arguments: those are named where they are written).
    if ((isObj(value.subquery) || "jointype" in value) && isObj(value.alias) && renames(value.alias.colnames))
      out.columns.add("*");
    // Typed fields hold nodes without their wrapper (`relation: {relname: ...}`,
    // `funccall: {funcname: ...}`, `setstmt: {kind: "VAR_SET_VALUE", ...}`): recognise them by shape.
    if (typeof value.relname === "string") {
      this.visitNode("RangeVar", value, scope, out);
      return;
    }
    if (Array.isArray(value.funcname) && "funcformat" in value) {
      this.visitNode("FuncCall", value, scope, out);
      return;
    }
    if (typeof value.kind === "string" && value.kind.startsWith("VAR_") && "name" in value) {
      this.visitNode("VariableSetStmt", value, scope, out);
      return;
    }
    for (const key in value) {
      const body = value[key];
      if (isObj(body) && key.charCodeAt(0) >= 65 && key.charCodeAt(0) <= 90)
        this.visitNode(key, body, scope, out);
      else if (typeof body === "object") this.visit(body, scope, out);
    }
  }

  visitNode(type: string, body: Node, scope: Scope | undefined, out: Collect, top = false): void {
    switch (type) {
      case "RangeVar": {
        const name = rangeVarName(body);
        const bare = !body.schemaname && !body.catalogname;
        if (!(bare && inScope(scope, str(body.relname) ?? ""))) out.tables.add(name);
        out.relations.add((str(body.relname) ?? "").toLowerCase());
        out.rowSources.add((str(body.relname) ?? "").toLowerCase());
        if (isObj(body.alias)) {
          out.relations.add((str(body.alias.aliasname) ?? "").toLowerCase());
          out.rowSources.add((str(body.alias.aliasname) ?? "").toLowerCase());
          if (renames(body.alias.colnames)) out.columns.add("*");
        }
        return;
      }
      case "ColumnRef": {
        const fields = Array.isArray(body.fields) ? body.fields : [];
        const last = fields[fields.length - 1];
        if (isObj(last) && isObj(last.A_Star)) out.columns.add("*");
        else {
          const name = (isObj(last) && isObj(last.String) ? (str(last.String.sval) ?? "") : "").toLowerCase();
          out.columns.add(name);
          if (fields.length === 1) out.singles.add(name);
        }
        return;
      }
      case "ResTarget": {
        // `SELECT *` / `SELECT t.*` at the top of a target list expands to plain columns, which
        // the result describes by origin: not a whole-row reference.
        const val = body.val;
        if (isObj(val) && isObj(val.ColumnRef)) {
          const fields = Array.isArray(val.ColumnRef.fields) ? val.ColumnRef.fields : [];
          const last = fields[fields.length - 1];
          if (isObj(last) && isObj(last.A_Star)) return;
        }
        this.visit(body, scope, out);
        return;
      }
      case "FuncCall": {
        const parts = stringList(body.funcname);
        const bare = (parts[parts.length - 1] ?? "").toLowerCase();
        out.functions.add(parts.map(ident).join("."));
        out.routine(parts, callArity(body));
        if (bare === "set_config") {
          const args = Array.isArray(body.args) ? body.args : [];
          const setting = constText(args[0]);
          if (setting === undefined) out.settings.add("(dynamic)");
          else if (setting.includes(".")) out.settings.add(setting.toLowerCase());
        }
        const reason = deniedFunction(bare);
        if (reason) this.#deny(`function ${bare}`, reason);
        if (bare === "nextval" && !this.#inert) {
          const args = Array.isArray(body.args) ? body.args : [];
          const seq = new Collect();
          seq.tables.add(sequenceName(constText(args[0])));
          seq.functions.add("nextval");
          this.nested.push({ kind: "update", collect: seq, nested: "sequence" });
        }
        this.visit(body.args, scope, out);
        this.visit(body.agg_order, scope, out);
        this.visit(body.agg_filter, scope, out);
        this.visit(body.over, scope, out);
        return;
      }
      case "SelectStmt":
      case "InsertStmt":
      case "UpdateStmt":
      case "DeleteStmt":
      case "MergeStmt":
        this.#visitQuery(type, body, scope, out, top);
        return;
      case "A_Const":
        if (isObj(body.ival) || isObj(body.fval)) numericConstants.add(Number(body.location ?? -1));
        return;
      case "A_Expr": {
        const name = stringList(body.name);
        const implied = IMPLIED_OPERATORS[str(body.kind) ?? ""];
        if (implied) for (const op of implied) out.operator([op]);
        else out.operator(name);
        this.visit(body.lexpr, scope, out);
        this.visit(body.rexpr, scope, out);
        return;
      }
      case "SubLink":
        if (Array.isArray(body.operName)) out.operator(stringList(body.operName));
        this.visit(body.testexpr, scope, out);
        this.visit(body.subselect, scope, out);
        return;
      case "TypeCast":
        if (isObj(body.typeName)) {
          out.cast(stringList(body.typeName.names));
          this.visit(body.typeName.typmods, scope, out);
        }
        this.visit(body.arg, scope, out);
        return;
      case "LockingClause":
        // lockedRels name FROM items (often aliases), not tables; the tables are in FROM.
        return;
      case "VariableSetStmt":
        this.#checkSet(body, out);
        this.visit(body.args, scope, out);
        return;
      case "TransactionStmt":
        this.#checkReadWrite(body.options, "BEGIN/START TRANSACTION ... READ WRITE");
        return;
      case "CopyStmt":
        if (!body.is_from) out.copyOut = copyOutOf(body);
        if (body.is_program) this.#deny("COPY ... PROGRAM", "runs a program on the database server");
        else if (body.filename !== undefined && body.filename !== null)
          this.#deny("COPY with a server file", "reads or writes files on the database server");
        if (isObj(body.relation)) out.tables.add(rangeVarName(body.relation));
        this.visit(body.query, scope, out);
        this.visit(body.attlist, scope, out);
        this.visit(body.whereClause, scope, out);
        return;
      case "DoStmt":
        this.#scanDo(body);
        return;
      case "AlterSystemStmt":
        this.#deny("ALTER SYSTEM", "changes the server configuration");
        return;
      case "LoadStmt":
        this.#deny("LOAD", "loads a server library");
        return;
      case "DropStmt":
        if (DROP_RELATION_TYPES.has(str(body.removeType) ?? "") && Array.isArray(body.objects)) {
          for (const o of body.objects) {
            const items = isObj(o) && isObj(o.List) ? stringList(o.List.items) : [];
            if (items.length) out.tables.add(items.map(ident).join("."));
          }
        }
        return;
      case "RenameStmt": {
        this.visit(body.relation, scope, out);
        const written = writtenColumns(
          type,
          body,
          () => out.columnList(),
          (n) => out.isRowSource(n),
        );
        if (written) out.written = written;
        this.visit(body.object, scope, out);
        return;
      }
      case "CreateTableAsStmt": {
        if (isObj(body.into) && isObj(body.into.rel)) out.tables.add(rangeVarName(body.into.rel));
        this.visit(body.query, scope, out);
        const written = writtenColumns(
          type,
          body,
          () => out.columnList(),
          (n) => out.isRowSource(n),
        );
        if (written) out.written = written;
        return;
      }
      default:
        this.visit(body, scope, out);
    }
  }

  #visitQuery(type: string, body: Node, outer: Scope | undefined, out: Collect, top: boolean) {
    const dmlKind = DML[type];
    const target = dmlKind !== undefined && !top && !this.#inert ? new Collect() : out;
    // A set operation's columns take the first branch's names, and PostgreSQL describes them
    // with no origin: a covered column in a later branch (`... UNION ALL TABLE customers`) is
    // renamed as surely as by an alias list.
    if (typeof body.op === "string" && body.op !== "SETOP_NONE") target.renamesColumns = true;
    // WITH: a non-recursive CTE sees the CTEs before it; a recursive one sees all of them.
    let scope = outer;
    const withClause = isObj(body.withClause) ? body.withClause : undefined;
    if (withClause) {
      const ctes = (Array.isArray(withClause.ctes) ? withClause.ctes : [])
        .map((c) => (isObj(c) && isObj(c.CommonTableExpr) ? c.CommonTableExpr : undefined))
        .filter((c): c is Node => c !== undefined);
      const all = new Set(ctes.map((c) => str(c.ctename) ?? ""));
      for (const n of all) target.rowSources.add(n.toLowerCase());
      if (ctes.some((c) => renames(c.aliascolnames))) target.renamesColumns = true;
      if (withClause.recursive) {
        scope = { names: all, parent: outer };
        for (const c of ctes) this.visit(c.ctequery, scope, target);
      } else {
        const seen = new Set<string>();
        for (const c of ctes) {
          this.visit(c.ctequery, { names: new Set(seen), parent: outer }, target);
          seen.add(str(c.ctename) ?? "");
        }
        scope = { names: all, parent: outer };
      }
    }
    for (const key in body) {
      if (key === "withClause" || key === "lockingClause") continue;
      const value = body[key];
      // Targets are tables even when a CTE has the same name (a CTE cannot be written to).
      if (key === "relation" && dmlKind !== undefined && isObj(value)) {
        target.tables.add(rangeVarName(value));
        target.relations.add((str(value.relname) ?? "").toLowerCase());
        if (isObj(value.alias)) target.relations.add((str(value.alias.aliasname) ?? "").toLowerCase());
        continue;
      }
      if (key === "intoClause" && isObj(value)) {
        if (isObj(value.rel)) target.tables.add(rangeVarName(value.rel));
        continue;
      }
      if (typeof value === "object") this.visit(value, scope, target);
    }
    const written = writtenColumns(
      type,
      body,
      () => target.columnList(),
      (n) => target.isRowSource(n),
    );
    if (written) target.written = written;
    if (target !== out) {
      out.merge(target);
      this.nested.push({ kind: dmlKind as SqlKind, collect: target, nested: "cte" });
    }
    if (
      type === "SelectStmt" &&
      Array.isArray(body.lockingClause) &&
      body.lockingClause.length &&
      !this.#inert
    ) {
      const locked = new Collect();
      for (const t of target.tables) locked.tables.add(t);
      this.nested.push({ kind: "update", collect: locked, nested: "locking" });
    }
  }

  #checkSet(body: Node, out: Collect) {
    const kind = str(body.kind);
    const name = (str(body.name) ?? "").toLowerCase();
    if (name.includes(".")) out.settings.add(name);
    if (kind === "VAR_RESET_ALL") return; // back to the session's startup values, which the sidecar chose
    if (kind === "VAR_SET_MULTI") {
      this.#checkReadWrite(body.args, `SET ${str(body.name) ?? ""} ... READ WRITE`);
      return;
    }
    let values: string[] | undefined;
    if (kind === "VAR_SET_VALUE")
      values = (Array.isArray(body.args) ? body.args : []).map((a) => constText(a) ?? "?");
    else if (kind === "VAR_SET_CURRENT") values = ["?"];
    const reason = guardedSetting(name, values);
    if (reason) this.#deny(`${kind === "VAR_RESET" ? "RESET" : "SET"} ${name}`, reason);
  }

  #checkReadWrite(options: unknown, what: string) {
    if (!Array.isArray(options)) return;
    for (const o of options) {
      if (!isObj(o) || !isObj(o.DefElem) || o.DefElem.defname !== "transaction_read_only") continue;
      if (defElemBool(o.DefElem) !== true) this.#deny(what, "the sidecar controls read-only mode");
    }
  }

  #scanDo(body: Node) {
    literalsRead = true;
    const args = Array.isArray(body.args) ? body.args : [];
    for (const a of args) {
      if (!isObj(a) || !isObj(a.DefElem) || a.DefElem.defname !== "as") continue;
      const arg = a.DefElem.arg;
      const code = isObj(arg) && isObj(arg.String) ? (str(arg.String.sval) ?? "") : "";
      const m = DO_SCAN.exec(code);
      if (m)
        this.#deny(`DO block mentioning ${m[0].toLowerCase()}`, "uses an always-denied function or setting");
    }
  }
}

/** `SELECT [pg_catalog.]set_config(name, value, is_local)` alone, every argument a constant. */
/** LOCKMODE AccessShareLock (lockdefs.h). */
export function builtinRefusal(c: Classification): string | undefined {
  if (c.errors.length) return c.errors.join("; ");
  const d = c.denials[0];
  if (d) return `${d.what} is always denied: ${d.reason}`;
  return undefined;
}
