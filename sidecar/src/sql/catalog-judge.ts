// Judges code a statement's text does not show, against the upstream's catalog (catalog.ts): the
// functions a classified statement calls — by name, through operators, through the views,
// policies, defaults, constraints, triggers and domains of the relations it touches, through casts
// to domains — and whether any of them is opaque. An opaque statement is judged like CALL: only a
// rule that lists the `call` kind (or names the function) may let it through; `withOpaqueCalls`
// adds one `call` entry per opaque function so that the existing rule matching does exactly that.
//
// Name resolution over-approximates: an unqualified name matches that name in every schema, and
// overloads are told apart only by argument count (`args` from the classifier; a call with named
// or VARIADIC arguments matches every overload). A name the catalog does not know is opaque
// (fail closed: the function may be created by an earlier statement of the same text).

import { type Catalog, candidates, describe, REWRITE_RULE } from "./catalog.ts";
import type { Classification, ClassifiedStatement, OperatorRef, TypeRef } from "./classification.ts";
import { splitQualified } from "./names.ts";
import { FIRST_NORMAL_OID } from "./volatile-allow-list.ts";

export type CallVia = "call" | "operator" | "relation" | "cast" | "implicit" | "catalog-change";

export interface CalledFunction {
  /** `schema.name` */
  function: string;
  oid: number;
  via: CallVia;
  /** What led to it: the name as written, the operator, the relation or the type. */
  through: string;
}

export interface OpaqueCall {
  /** `schema.name`, or the name as written when the catalog does not know it. */
  function: string;
  via: CallVia;
  through: string;
  reason: string;
}

export interface StatementCalls {
  /** Functions called by name, and those reached otherwise (built-in operators of harmless built-ins are left out). */
  calls: readonly CalledFunction[];
  opaque: readonly OpaqueCall[];
  /**
   * The statement touches user-defined objects (OID ≥ 16384) whose definition another session
   * may change: re-check the catalog fingerprint before running it (CatalogCache.get).
   */
  userDefined: boolean;
}

/** Kinds that may change the catalog: later statements of the same text cannot be judged from it. */
const CATALOG_CHANGING = new Set(["create", "alter", "drop", "call", "do"]);
/** Kinds an event trigger may fire on (ddl_command_start/end, sql_drop, table_rewrite). */
const EVENT_TRIGGERED = new Set(["create", "alter", "drop", "grant", "revoke", "other"]);
/** Kinds that write their tables (their relations' write effects apply). */
const WRITES = new Set(["insert", "update", "delete", "merge", "copyFrom", "truncate"]);

class Calls {
  readonly calls: CalledFunction[] = [];
  readonly opaque: OpaqueCall[] = [];
  readonly #seen = new Set<string>();
  userDefined = false;
  readonly catalog: Catalog;
  constructor(catalog: Catalog) {
    this.catalog = catalog;
  }

  add(oid: number, via: CallVia, through: string) {
    const key = `${oid}:${via}:${through}`;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    const f = this.catalog.functions.get(oid);
    const name = describe(f, oid);
    if (oid >= FIRST_NORMAL_OID) this.userDefined = true;
    this.calls.push({ function: name, oid, via, through });
    if (oid === REWRITE_RULE)
      this.opaque.push({ function: name, via, through, reason: "a rule on it runs statements of its own" });
    else if (!f) this.opaque.push({ function: name, via, through, reason: "not in the catalog" });
    else if (f.opaque !== undefined) this.opaque.push({ function: name, via, through, reason: f.opaque });
  }

  unknown(function_: string, via: CallVia, through: string, reason: string) {
    this.opaque.push({ function: function_, via, through, reason });
  }
}

const written = (r: { schema?: string; name: string }) => (r.schema ? `${r.schema}.${r.name}` : r.name);

/** The functions one statement calls and which of them are opaque. */
export function statementCalls(s: ClassifiedStatement, catalog: Catalog): StatementCalls {
  const out = new Calls(catalog);
  for (const ref of s.routines) {
    const found = candidates(catalog.functionsByName, ref);
    if (found.length === 0)
      out.unknown(written(ref), "call", written(ref), "no function of that name and arity in the database");
    for (const f of found) out.add(f.oid, "call", written(ref));
  }
  // Attribute notation (`o.f` for f(o)): only functions that exist can be meant, and only the
  // database's own or opaque ones are worth listing (a column `c.name` is not a call of name()).
  for (const name of s.fieldCalls ?? [])
    for (const f of candidates(catalog.functionsByName, { name, args: 1 }))
      if (f.oid >= FIRST_NORMAL_OID || f.opaque !== undefined) out.add(f.oid, "call", name);
  for (const ref of s.operators) operatorCalls(out, catalog, ref);
  for (const ref of s.casts) castCalls(out, catalog, ref);
  const mode = WRITES.has(s.kind) ? "writes" : "reads";
  for (const table of s.tables) {
    const { schema, name } = splitQualified(table);
    for (const r of catalog.relationsByName.get(name) ?? []) {
      if (schema !== undefined && r.schema !== schema) continue;
      if (r.oid >= FIRST_NORMAL_OID) out.userDefined = true;
      for (const oid of r[mode]) out.add(oid, "relation", `${r.schema}.${r.name}`);
    }
  }
  for (const f of catalog.implicitOpaque)
    out.add(f.oid, "implicit", "a cast, operator class or type function");
  if (EVENT_TRIGGERED.has(s.kind))
    for (const f of catalog.eventTriggerOpaque) out.add(f.oid, "implicit", "an event trigger");
  return { calls: out.calls, opaque: out.opaque, userDefined: out.userDefined };
}

function operatorCalls(out: Calls, catalog: Catalog, ref: OperatorRef) {
  const ops = (catalog.operatorsByName.get(ref.name) ?? []).filter(
    (o) => ref.schema === undefined || o.schema === ref.schema,
  );
  if (ops.length === 0) out.unknown(`operator ${written(ref)}`, "operator", written(ref), "no such operator");
  for (const o of ops) {
    // Built-in operators over built-in functions that a read may call are the common case
    // (`=` alone has dozens): not listed, which keeps the judgement cheap.
    if (
      o.oid < FIRST_NORMAL_OID &&
      o.fn < FIRST_NORMAL_OID &&
      catalog.functions.get(o.fn)?.opaque === undefined
    )
      if (catalog.functions.has(o.fn)) continue;
    if (o.oid >= FIRST_NORMAL_OID) out.userDefined = true;
    out.add(o.fn, "operator", `${o.schema}.${o.name}`);
  }
}

function castCalls(out: Calls, catalog: Catalog, ref: TypeRef) {
  for (const d of catalog.domainsByName.get(ref.name) ?? []) {
    if (ref.schema !== undefined && d.schema !== ref.schema) continue;
    out.userDefined = true;
    for (const oid of d.checks) out.add(oid, "cast", `${d.schema}.${d.name}`);
  }
}

export interface ClassificationCalls {
  /** Per entry of `classification.statements`, same order. */
  statements: readonly StatementCalls[];
  opaque: boolean;
  userDefined: boolean;
}

const judged = new WeakMap<Catalog, WeakMap<Classification, ClassificationCalls>>();

/**
 * `statementCalls` for every entry of a classification, plus: every statement after one that
 * changes the catalog (DDL, CALL, DO, `other`) in the same text is opaque, since this catalog
 * predates it. Memoized per (catalog, classification): both are immutable and shared.
 */
export function classificationCalls(c: Classification, catalog: Catalog): ClassificationCalls {
  let perCatalog = judged.get(catalog);
  if (!perCatalog) {
    perCatalog = new WeakMap();
    judged.set(catalog, perCatalog);
  }
  const hit = perCatalog.get(c);
  if (hit) return hit;
  let changedAt = Number.POSITIVE_INFINITY;
  const statements = c.statements.map((s) => {
    const calls = statementCalls(s, catalog);
    if (s.index > changedAt) {
      const extra: OpaqueCall = {
        function: "(any)",
        via: "catalog-change",
        through: `statement ${changedAt + 1}`,
        reason: "an earlier statement of the same text may change the catalog this was judged with",
      };
      return { ...calls, opaque: [...calls.opaque, extra] };
    }
    if ((CATALOG_CHANGING.has(s.kind) || s.effect?.kind === "execute") && !s.nested)
      changedAt = Math.min(changedAt, s.index);
    return calls;
  });
  const result: ClassificationCalls = {
    statements,
    opaque: statements.some((s) => s.opaque.length > 0),
    userDefined: statements.some((s) => s.userDefined),
  };
  perCatalog.set(c, result);
  return result;
}

/** Kinds that run no database code a catalog change could redefine. */
const CODE_FREE = new Set(["transaction", "twoPhaseCommit", "housekeeping", "set", "show"]);

/**
 * `calls` for a session whose own catalog change is not committed yet: the catalog it was read
 * from predates the change (a function replaced, a trigger or rule added, a built-in shadowed),
 * so every statement that may run database code is opaque until the transaction ends.
 */
export function withUncommittedCatalog(c: Classification, calls: ClassificationCalls): ClassificationCalls {
  const extra: OpaqueCall = {
    function: "(any)",
    via: "catalog-change",
    through: "this session's uncommitted catalog change",
    reason:
      "the session changed the catalog in its open transaction, which the catalog it is judged with cannot see",
  };
  const statements = c.statements.map((s, i) => {
    const own = calls.statements[i] ?? { calls: [], opaque: [], userDefined: false };
    const names =
      s.tables.length + s.routines.length + s.operators.length + s.casts.length + (s.fieldCalls?.length ?? 0);
    return CODE_FREE.has(s.kind) || (names === 0 && !s.effect)
      ? own
      : { ...own, opaque: [...own.opaque, extra] };
  });
  return { ...calls, statements, opaque: statements.some((s) => s.opaque.length > 0) };
}

/**
 * The classification's statements plus one `call` entry per opaque function (same index and
 * fingerprint as the statement that calls it), for the policy engine: a rule must then allow
 * `call` (explicitly, as the guard requires for CALL) with those function names. The originals
 * are kept, so the statement's own kind and tables are still judged.
 */
export function withOpaqueCalls(c: Classification, calls: ClassificationCalls): ClassifiedStatement[] {
  const out: ClassifiedStatement[] = [];
  c.statements.forEach((s, i) => {
    out.push(s);
    const opaque = calls.statements[i]?.opaque ?? [];
    if (opaque.length === 0) return;
    out.push({
      kind: "call",
      tables: [],
      functions: [...new Set(opaque.map((o) => o.function))],
      columns: [],
      routines: [],
      operators: [],
      casts: [],
      fingerprint: s.fingerprint,
      index: s.index,
      nested: "opaque",
    });
  });
  return out;
}
