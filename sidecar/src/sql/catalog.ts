// What the upstream database's own catalog says about code a statement's text does not show:
// which functions exist (volatility, language, kind, arity), what operators call, and what runs
// when a relation is read or written (view rewrite rules, row-level security policies, column
// defaults, CHECK constraints, triggers, domain CHECKs of its columns), plus the functions the
// server may call implicitly (casts, operator classes, type support). catalog-judge.ts turns a
// classified statement into the set of functions it calls and whether any of them is opaque.
//
// Which functions are opaque (may write, or do more than a read may) is decided here, once per
// catalog load:
// - VOLATILE: opaque unless on the curated allow-list (volatile-allow-list.ts).
// - STABLE / IMMUTABLE built-ins and C functions: trusted as declared (PostgreSQL refuses data
//   changes in non-volatile SQL and PL/pgSQL functions, and C functions are the operator's).
// - STABLE / IMMUTABLE SQL and PL/pgSQL functions: PostgreSQL's guarantee is not transitive (a
//   STABLE function that calls a VOLATILE one writes, measured on 15.18), so they are opaque when
//   their body runs dynamic SQL (EXECUTE) or mentions the name of anything opaque: a function, an
//   operator, a relation whose reads call one, a domain whose CHECK does. Name-based, so an
//   over-approximation; computed to a fixed point.
// - Other languages (plpython, plperl, ...): opaque whatever their volatility (they can run SQL
//   text through SPI).
// - Aggregates: PostgreSQL stores them IMMUTABLE; they are as opaque as their support functions.
//
// What runs when a relation is touched is read from the definitions' text, deparsed by the server
// (pg_get_ruledef, pg_get_expr) and classified like a statement: pg_depend is not enough, since
// PostgreSQL records no dependency on pinned built-ins (a view calling pg_try_advisory_lock or
// lo_creat has no pg_depend row for it, measured on 15.18).
//
// Invalidation: `fingerprint` sums row counts and xmin of the catalogs this reads (one cheap
// query, ~1 ms on a small database). `CatalogCache.get` re-checks it on every call, so callers
// ask at session start, after any DDL the session ran, and before running a statement that
// touches user-defined objects (catalog-judge.ts reports that), and reload only when it moved.
import type { RoutineRef } from "./classification.ts";
import { classifySync, loadSqlParser } from "./classify.ts";
import { splitQualified } from "./names.ts";
import type { SqlParser } from "./parser.ts";
import { FIRST_NORMAL_OID, harmlessVolatile } from "./volatile-allow-list.ts";

/** One row of a catalog query: column name → value (text from the wire, or typed from a driver). */
export type CatalogRow = Readonly<Record<string, unknown>>;
/** Runs one SQL query on the upstream and returns its rows. */
export type CatalogQuery = (sql: string) => Promise<readonly CatalogRow[]>;

export type Volatility = "immutable" | "stable" | "volatile";

export interface CatalogFunction {
  oid: number;
  schema: string;
  name: string;
  /** f function, p procedure, a aggregate, w window. */
  kind: string;
  volatility: Volatility;
  language: string;
  nargs: number;
  nargdefaults: number;
  variadic: boolean;
  extension?: string;
  /** Why calling it is opaque; undefined when a read may call it. */
  opaque?: string;
}

export interface CatalogOperator {
  oid: number;
  schema: string;
  name: string;
  /** oprcode: the function the operator calls. */
  fn: number;
}

/** What runs when a relation (table, view, ...) is touched, as function OIDs, transitively. */
export interface RelationEffects {
  oid: number;
  schema: string;
  name: string;
  /** Called when it is read: view rules (and the relations they read), RLS policies. */
  reads: readonly number[];
  /** Called when it is written: all of the above, defaults, CHECKs, triggers, column domains, rules. */
  writes: readonly number[];
}

export interface DomainEffects {
  oid: number;
  schema: string;
  name: string;
  /** Functions its CHECK constraints (and those of its base domains) call. */
  checks: readonly number[];
}

export interface Catalog {
  readonly fingerprint: string;
  readonly functions: ReadonlyMap<number, CatalogFunction>;
  /** By bare name (as stored: case-sensitive). */
  readonly functionsByName: ReadonlyMap<string, readonly CatalogFunction[]>;
  readonly operatorsByName: ReadonlyMap<string, readonly CatalogOperator[]>;
  /** Relations with anything that runs when they are touched, by bare name. */
  readonly relationsByName: ReadonlyMap<string, readonly RelationEffects[]>;
  readonly domainsByName: ReadonlyMap<string, readonly DomainEffects[]>;
  /**
   * Types (and their array types) whose domain CHECKs call something opaque: domains and
   * composites with such fields. A Parse that declares a parameter of one is opaque.
   */
  readonly opaqueTypes: ReadonlySet<number>;
  /** Opaque functions the server may call without the text naming them (casts, opclasses, type I/O). */
  readonly implicitOpaque: readonly CatalogFunction[];
  /** Opaque functions of enabled event triggers: run by DDL. */
  readonly eventTriggerOpaque: readonly CatalogFunction[];
  /** The built-in half, for the next load of the same database. */
  readonly builtin?: BuiltinPart;
}

// ---------------------------------------------------------------------------------------------
// Queries. OIDs as int8, everything else as text or int, so that text-format rows parse alike.

const FINGERPRINTED = [
  "pg_proc",
  "pg_operator",
  "pg_rewrite",
  "pg_policy",
  "pg_attrdef",
  "pg_constraint",
  "pg_trigger",
  "pg_type",
  "pg_cast",
  "pg_amop",
  "pg_amproc",
  "pg_aggregate",
  "pg_class",
  "pg_namespace",
  "pg_extension",
  "pg_language",
  "pg_event_trigger",
  "pg_range",
];

/** One row, one column `fingerprint`: changes whenever a catalog this module reads changes. */
export const FINGERPRINT_SQL = `SELECT concat_ws(' ', current_setting('server_version_num'), ${[
  ...FINGERPRINTED.map(
    (t) => `(SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_catalog.${t})`,
  ),
  // Column types (a column moved to a domain) without scanning the built-in attributes.
  `(SELECT count(*) || ':' || coalesce(sum(xmin::text::int8), 0) FROM pg_catalog.pg_attribute WHERE attrelid >= ${FIRST_NORMAL_OID})`,
].join(", ")}) AS fingerprint`;

export const FUNCTIONS_SQL = `SELECT p.oid::int8 AS oid, n.nspname AS schema, p.proname AS name, p.prokind AS kind,
  p.provolatile AS volatility, l.lanname AS language, p.pronargs AS nargs, p.pronargdefaults AS nargdefaults,
  (p.provariadic <> 0) AS variadic,
  (SELECT e.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
    WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
      AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e' LIMIT 1) AS extension,
  CASE WHEN p.oid >= ${FIRST_NORMAL_OID} AND p.provolatile <> 'v' THEN
    CASE WHEN p.prosqlbody IS NOT NULL THEN pg_catalog.pg_get_function_sqlbody(p.oid) ELSE p.prosrc END END AS body,
  CASE WHEN p.oid >= ${FIRST_NORMAL_OID} THEN array_to_string(array_append(p.proargtypes::oid[], p.prorettype)::int8[], ',') END AS types,
  CASE WHEN p.oid >= ${FIRST_NORMAL_OID} AND p.pronargdefaults > 0 THEN pg_catalog.pg_get_expr(p.proargdefaults, 0) END AS defaults,
  CASE WHEN p.prokind = 'a' THEN (SELECT array_to_string(ARRAY[a.aggtransfn::oid, a.aggfinalfn::oid,
      a.aggcombinefn::oid, a.aggserialfn::oid, a.aggdeserialfn::oid, a.aggmtransfn::oid,
      a.aggminvtransfn::oid, a.aggmfinalfn::oid]::int8[], ',')
    FROM pg_catalog.pg_aggregate a WHERE a.aggfnoid = p.oid) END AS support
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN pg_catalog.pg_language l ON l.oid = p.prolang`;

export const OPERATORS_SQL = `SELECT o.oid::int8 AS oid, n.nspname AS schema, o.oprname AS name, o.oprcode::oid::int8 AS fn
FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace`;

/**
 * Edges "touching `obj` runs this": `via` says how (r/R rewrite rule of a relation: SELECT / other
 * event, p policy, d column default, c CHECK, D domain CHECK: `def` is the deparsed definition;
 * t trigger: `ref` is the function; f a foreign key that cascades (or sets null or defaults) into
 * `ref`, the referencing table, whose triggers and rules then run; a column of a domain type, b domain over a domain or a field
 * of a composite type that is a domain or a composite: `ref` is that type). A value coerced to a
 * composite type (`ROW(1)::t`, `'(1)'::t`, a function argument of type t) runs its fields' domain
 * CHECKs, so composites are traced like domains.
 */
export const EDGES_SQL = `SELECT CASE WHEN r.ev_type = '1' THEN 'r' ELSE 'R' END AS via, r.ev_class::int8 AS obj,
    pg_catalog.pg_get_ruledef(r.oid) AS def, NULL::int8 AS ref FROM pg_catalog.pg_rewrite r
UNION ALL
SELECT 'p', p.polrelid::int8, 'SELECT ' || coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), 'true') || ', '
    || coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), 'true'), NULL FROM pg_catalog.pg_policy p
UNION ALL
SELECT 'd', a.adrelid::int8, 'SELECT ' || pg_catalog.pg_get_expr(a.adbin, a.adrelid), NULL FROM pg_catalog.pg_attrdef a
UNION ALL
SELECT CASE WHEN c.contypid <> 0 THEN 'D' ELSE 'c' END,
    (CASE WHEN c.contypid <> 0 THEN c.contypid::oid ELSE c.conrelid::oid END)::int8,
    'SELECT ' || pg_catalog.pg_get_expr(c.conbin, c.conrelid), NULL
  FROM pg_catalog.pg_constraint c WHERE c.contype = 'c'
UNION ALL
SELECT 't', t.tgrelid::int8, NULL, t.tgfoid::int8 FROM pg_catalog.pg_trigger t
UNION ALL
SELECT 'f', c.confrelid::int8, NULL, c.conrelid::int8 FROM pg_catalog.pg_constraint c
  WHERE c.contype = 'f' AND (c.confdeltype IN ('c', 'n', 'd') OR c.confupdtype IN ('c', 'n', 'd'))
UNION ALL
SELECT 'a', a.attrelid::int8, NULL, t.oid::int8
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid OR t.typarray = a.atttypid
  WHERE a.attrelid >= ${FIRST_NORMAL_OID} AND a.attnum > 0 AND NOT a.attisdropped AND t.typtype = 'd'
UNION ALL
SELECT 'b', t.oid::int8, NULL, t.typbasetype::int8 FROM pg_catalog.pg_type t
  WHERE t.typtype = 'd' AND t.typbasetype >= ${FIRST_NORMAL_OID}
UNION ALL
SELECT 'b', t.oid::int8, NULL, f.oid::int8 FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_catalog.pg_type f ON f.oid = a.atttypid OR f.typarray = a.atttypid
  WHERE t.typtype = 'c' AND t.oid >= ${FIRST_NORMAL_OID} AND f.typtype IN ('d', 'c') AND f.oid >= ${FIRST_NORMAL_OID}`;

/** Relations and domains named by the edges (the only ones with anything to report). */
export const OBJECTS_SQL = `SELECT 'class' AS class, c.oid::int8 AS oid, n.nspname AS schema, c.relname AS name,
    NULL::int8 AS array_oid
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid IN (SELECT ev_class FROM pg_catalog.pg_rewrite UNION SELECT polrelid FROM pg_catalog.pg_policy
    UNION SELECT adrelid FROM pg_catalog.pg_attrdef UNION SELECT conrelid FROM pg_catalog.pg_constraint WHERE contype = 'c'
    UNION SELECT tgrelid FROM pg_catalog.pg_trigger
    UNION SELECT a.attrelid FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid OR t.typarray = a.atttypid
      WHERE a.attrelid >= ${FIRST_NORMAL_OID} AND t.typtype = 'd')
UNION ALL
SELECT 'type', t.oid::int8, n.nspname, t.typname, t.typarray::int8 FROM pg_catalog.pg_type t
  JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
  WHERE t.typtype = 'd' OR (t.typtype = 'c' AND t.oid >= ${FIRST_NORMAL_OID})`;

/**
 * User functions the server may call without the text naming them: `kind` i for any statement
 * (casts, operator classes, type support, a range type's subtype_diff, which the planner calls
 * to estimate a range condition), e for DDL (event triggers).
 */
export const IMPLICIT_SQL = `SELECT DISTINCT fn, kind FROM (
  SELECT castfunc::int8 AS fn, 'i' AS kind FROM pg_catalog.pg_cast
  UNION ALL SELECT evtfoid::int8, 'e' FROM pg_catalog.pg_event_trigger WHERE evtenabled <> 'D'
  UNION ALL SELECT amproc::oid::int8, 'i' FROM pg_catalog.pg_amproc
  UNION ALL SELECT unnest(ARRAY[rngsubdiff::oid, rngcanonical::oid])::int8, 'i' FROM pg_catalog.pg_range
  UNION ALL SELECT o.oprcode::oid::int8, 'i' FROM pg_catalog.pg_amop a JOIN pg_catalog.pg_operator o ON o.oid = a.amopopr
  UNION ALL SELECT unnest(ARRAY[typinput::oid, typoutput::oid, typreceive::oid, typsend::oid, typmodin::oid,
    typmodout::oid, typanalyze::oid, typsubscript::oid])::int8, 'i' FROM pg_catalog.pg_type WHERE oid >= ${FIRST_NORMAL_OID}
) f WHERE fn >= ${FIRST_NORMAL_OID}`;

// ---------------------------------------------------------------------------------------------

const num = (v: unknown): number => {
  const n = typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : Number(String(v ?? ""));
  if (!Number.isFinite(n)) throw new Error(`catalog: expected a number, got ${JSON.stringify(v)}`);
  return n;
};
const text = (v: unknown): string => (v === null || v === undefined ? "" : String(v));
const bool = (v: unknown): boolean => v === true || v === "t" || v === "true";
const VOLATILITY: Readonly<Record<string, Volatility>> = { i: "immutable", s: "stable", v: "volatile" };

/** The built-in half (OID < 16384) or the user-defined half of one of the queries above. */
export function catalogPart(sql: string, column: "oid" | "obj", part: "builtin" | "user"): string {
  return `SELECT * FROM (${sql}) q WHERE q.${column} ${part === "user" ? ">=" : "<"} ${FIRST_NORMAL_OID}`;
}

/**
 * The built-in half of a catalog: fixed for a server version, loaded once per database and
 * reused by every reload (only user-defined objects are read again).
 */
export interface BuiltinPart {
  readonly version: string;
  readonly rows: Omit<CatalogRows, "fingerprint" | "implicit">;
  /** What touching each built-in relation or domain runs (see `reach` in buildCatalog). */
  readonly reached: Map<string, Set<number>>;
}

export interface CatalogRows {
  fingerprint: string;
  functions: readonly CatalogRow[];
  operators: readonly CatalogRow[];
  edges: readonly CatalogRow[];
  objects: readonly CatalogRow[];
  implicit: readonly CatalogRow[];
}

/**
 * Loads the catalog through `query`, one query at a time (the caller's connection may not
 * pipeline). `builtin`, from an earlier load of the same server, skips the built-in half.
 * pg_get_expr and pg_get_ruledef take AccessShareLock on the relations they deparse: run it on a
 * connection with a short lock_timeout (a session holding an exclusive lock in an open
 * transaction would otherwise make the load wait on it), and refuse the statement when it fails.
 */
export async function loadCatalog(
  query: CatalogQuery,
  opts: { fingerprint?: string; builtin?: BuiltinPart; parser?: SqlParser } = {},
): Promise<Catalog> {
  await loadSqlParser();
  const fingerprint = opts.fingerprint ?? text((await query(FINGERPRINT_SQL))[0]?.fingerprint);
  const version = fingerprint.split(" ")[0] ?? "";
  const load = async (part: "builtin" | "user") => ({
    functions: await query(catalogPart(FUNCTIONS_SQL, "oid", part)),
    operators: await query(catalogPart(OPERATORS_SQL, "oid", part)),
    edges: await query(catalogPart(EDGES_SQL, "obj", part)),
    objects: await query(catalogPart(OBJECTS_SQL, "oid", part)),
  });
  const builtin =
    opts.builtin && opts.builtin.version === version
      ? opts.builtin
      : { version, rows: await load("builtin"), reached: new Map<string, Set<number>>() };
  const user = await load("user");
  const implicit = await query(IMPLICIT_SQL);
  const rows: CatalogRows = {
    fingerprint,
    functions: [...builtin.rows.functions, ...user.functions],
    operators: [...builtin.rows.operators, ...user.operators],
    edges: [...builtin.rows.edges, ...user.edges],
    objects: [...builtin.rows.objects, ...user.objects],
    implicit,
  };
  return buildCatalog(rows, builtin, opts.parser);
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V) {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

const WORD = /[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*|"(?:[^"]|"")+"/g;

/** Identifiers a function body mentions: lower-cased words, quoted identifiers exactly. */
function mentions(body: string): Set<string> {
  const out = new Set<string>();
  for (const m of body.matchAll(WORD)) {
    const w = m[0];
    out.add(w.startsWith('"') ? w.slice(1, -1).replace(/""/g, '"') : w.toLowerCase());
  }
  return out;
}

const TRUSTED_LANGUAGES = new Set(["internal", "c"]);
const SCANNED_LANGUAGES = new Set(["sql", "plpgsql"]);

/**
 * Builds the catalog from the rows of the queries above (pure: tests feed it rows directly).
 * Needs the SQL parser loaded (definitions are classified).
 */
export function buildCatalog(rows: CatalogRows, builtin?: BuiltinPart, parser?: SqlParser): Catalog {
  const functions = new Map<number, CatalogFunction>();
  const functionsByName = new Map<string, CatalogFunction[]>();
  const bodies = new Map<number, { raw: string; words: Set<string> }>();
  const support = new Map<number, number[]>();
  const argTypes = new Map<number, number[]>();
  const argDefaults = new Map<number, string>();
  for (const r of rows.functions) {
    const extension = r.extension === null || r.extension === undefined ? undefined : text(r.extension);
    const f: CatalogFunction = {
      oid: num(r.oid),
      schema: text(r.schema),
      name: text(r.name),
      kind: text(r.kind),
      volatility: VOLATILITY[text(r.volatility)] ?? "volatile",
      language: text(r.language),
      nargs: num(r.nargs),
      nargdefaults: num(r.nargdefaults),
      variadic: bool(r.variadic),
      ...(extension ? { extension } : {}),
    };
    functions.set(f.oid, f);
    push(functionsByName, f.name, f);
    if (r.body !== null && r.body !== undefined) {
      const raw = text(r.body);
      bodies.set(f.oid, { raw, words: mentions(raw) });
    }
    if (r.support)
      support.set(
        f.oid,
        text(r.support)
          .split(",")
          .map(num)
          .filter((o) => o !== 0),
      );
    if (r.types) argTypes.set(f.oid, text(r.types).split(",").map(num));
    if (r.defaults !== null && r.defaults !== undefined) argDefaults.set(f.oid, text(r.defaults));
  }
  const operators = new Map<number, CatalogOperator>();
  const operatorsByName = new Map<string, CatalogOperator[]>();
  for (const r of rows.operators) {
    const o: CatalogOperator = { oid: num(r.oid), schema: text(r.schema), name: text(r.name), fn: num(r.fn) };
    operators.set(o.oid, o);
    push(operatorsByName, o.name, o);
  }

  // Edges: object → what touching it runs, per reason.
  type Edge = { via: string; def?: string; ref?: number };
  const edges = new Map<string, Edge[]>(); // `${via}:${obj}`
  for (const r of rows.edges) {
    const via = text(r.via);
    const edge: Edge =
      r.def !== null && r.def !== undefined ? { via, def: text(r.def) } : { via, ref: num(r.ref) };
    push(edges, `${text(r.via)}:${num(r.obj)}`, edge);
  }
  const edgesOf = (vias: string, obj: number): Edge[] =>
    vias.split("").flatMap((v) => edges.get(`${v}:${obj}`) ?? []);

  const relationOids = new Map<string, number[]>();
  const domainOids = new Map<string, number[]>();
  const objectNames = new Map<number, { schema: string; name: string }>();
  const arrayOf = new Map<number, number>();
  for (const r of rows.objects) {
    const oid = num(r.oid);
    const name = text(r.name);
    if (r.array_oid !== null && r.array_oid !== undefined && num(r.array_oid) !== 0)
      arrayOf.set(oid, num(r.array_oid));
    objectNames.set(oid, { schema: text(r.schema), name });
    push(text(r.class) === "class" ? relationOids : domainOids, name, oid);
  }
  const named = <T extends { schema?: string; name: string }>(map: Map<string, number[]>, ref: T) =>
    (map.get(ref.name) ?? []).filter(
      (oid) => ref.schema === undefined || objectNames.get(oid)?.schema === ref.schema,
    );

  // Functions reached by touching an object, transitively through views, domains and operators.
  // An unresolvable name in a definition reaches UNRESOLVED, which is opaque.
  // Built-in objects reference built-in objects only (by OID, as PostgreSQL stored them): what
  // they reach is computed once per server and shared by every later build.
  const memo = new Map<string, Set<number>>(builtin?.reached);
  const reach = (mode: "read" | "write" | "domain", obj: number): Set<number> => {
    const key = `${mode}:${obj}`;
    const known = memo.get(key);
    if (known) return known;
    const out = new Set<number>();
    memo.set(key, out); // cycles (a view over itself, recursive domains) end here
    const vias = mode === "read" ? "rp" : mode === "write" ? "rRpdctaf" : "Db";
    for (const edge of edgesOf(vias, obj)) {
      if (edge.via === "f") {
        if (edge.ref !== undefined) for (const f of reach("write", edge.ref)) out.add(f);
        continue;
      }
      if (edge.ref !== undefined) {
        if (functions.has(edge.ref)) out.add(edge.ref);
        else for (const f of reach("domain", edge.ref)) out.add(f); // a domain type
        continue;
      }
      // A rule on another event than SELECT (`ON UPDATE ... DO ALSO INSERT INTO log ...`) runs
      // statements of its own when the relation is written, which the approver of the write is
      // not shown: opaque, unless all it does is discard the write.
      if (edge.via === "R" && !/\bDO INSTEAD\s+NOTHING;?\s*$/.test(edge.def ?? "")) out.add(REWRITE_RULE);
      const c = classifySync(edge.def ?? "", parser);
      if (c.errors.length) {
        out.add(UNRESOLVED);
        continue;
      }
      for (const s of c.statements) {
        for (const ref of s.routines) {
          const found = candidates(functionsByName, ref);
          if (found.length === 0) out.add(UNRESOLVED);
          for (const f of found) out.add(f.oid);
        }
        for (const ref of s.operators) {
          const ops = (operatorsByName.get(ref.name) ?? []).filter(
            (o) => ref.schema === undefined || o.schema === ref.schema,
          );
          if (ops.length === 0) out.add(UNRESOLVED);
          for (const o of ops) out.add(o.fn);
        }
        for (const ref of s.casts)
          for (const d of named(domainOids, ref)) for (const f of reach("domain", d)) out.add(f);
        for (const table of s.tables) {
          for (const rel of named(relationOids, splitQualified(table))) {
            if (rel === obj) continue;
            for (const f of reach("read", rel)) out.add(f);
            if (mode === "write") for (const f of reach("write", rel)) out.add(f);
          }
        }
      }
    }
    return out;
  };

  const relations: RelationEffects[] = [];
  const domains: DomainEffects[] = [];
  if (builtin && builtin.reached.size === 0)
    for (const [oid] of objectNames) {
      if (oid >= FIRST_NORMAL_OID) continue;
      for (const mode of ["read", "write", "domain"] as const) {
        // Only built-in OIDs: PostgreSQL stored the built-ins' references by OID, so a user
        // function of the same name in this database is not what they call.
        const reached = [...reach(mode, oid)].filter((f) => f < FIRST_NORMAL_OID);
        builtin.reached.set(`${mode}:${oid}`, new Set(reached));
      }
    }
  for (const [oid, { schema, name }] of objectNames) {
    if (relationOids.get(name)?.includes(oid))
      relations.push({ oid, schema, name, reads: [...reach("read", oid)], writes: [...reach("write", oid)] });
    else domains.push({ oid, schema, name, checks: [...reach("domain", oid)] });
  }

  // Opaque functions, to a fixed point (a body mentioning something opaque is opaque).
  const opaqueNames = new Set<string>();
  const opaqueOperators = new Set<string>();
  const nameOpaque = (name: string) => {
    opaqueNames.add(name);
    opaqueNames.add(name.toLowerCase());
  };
  const mark = (f: CatalogFunction, reason: string) => {
    f.opaque = reason;
    nameOpaque(f.name);
    return true;
  };
  for (const f of functions.values()) {
    if (f.kind === "a") continue;
    if (f.volatility === "volatile") {
      if (!harmlessVolatile(f)) mark(f, "VOLATILE (it may write)");
    } else if (f.oid >= FIRST_NORMAL_OID && !TRUSTED_LANGUAGES.has(f.language)) {
      if (!SCANNED_LANGUAGES.has(f.language)) mark(f, `a ${f.language} function can run any SQL`);
      else if (bodies.get(f.oid)?.words.has("execute")) mark(f, "its body runs dynamic SQL (EXECUTE)");
    }
  }
  const fnOpaque = (oid: number) => !functions.has(oid) || functions.get(oid)?.opaque !== undefined;
  const domainChecks = new Map(domains.map((d) => [d.oid, d.checks]));
  // Argument defaults are evaluated in the caller's statement (`f()` runs `DEFAULT purge()`),
  // whatever the function's own language or volatility.
  const defaultCalls = new Map<number, number[]>();
  for (const [oid, expr] of argDefaults) {
    const called = new Set<number>();
    const c = classifySync(`SELECT ${expr}`, parser);
    if (c.errors.length) called.add(UNRESOLVED);
    for (const st of c.statements) {
      for (const ref of st.routines) {
        const found = candidates(functionsByName, ref);
        if (found.length === 0) called.add(UNRESOLVED);
        for (const f of found) called.add(f.oid);
      }
      for (const ref of st.operators) {
        const ops = (operatorsByName.get(ref.name) ?? []).filter(
          (o) => ref.schema === undefined || o.schema === ref.schema,
        );
        if (ops.length === 0) called.add(UNRESOLVED);
        for (const o of ops) called.add(o.fn);
      }
      for (const ref of st.casts)
        for (const d of named(domainOids, ref)) for (const f of reach("domain", d)) called.add(f);
    }
    defaultCalls.set(oid, [...called]);
  }
  for (let changed = true; changed; ) {
    changed = false;
    for (const o of operators.values()) if (fnOpaque(o.fn)) opaqueOperators.add(o.name);
    for (const r of relations) if (r.reads.some(fnOpaque)) nameOpaque(r.name);
    for (const d of domains) if (d.checks.some(fnOpaque)) nameOpaque(d.name);
    for (const f of functions.values()) {
      if (f.opaque !== undefined || f.oid < FIRST_NORMAL_OID) continue;
      // Arguments and results of a domain type run its CHECKs, whatever the language.
      const domainArg = (argTypes.get(f.oid) ?? []).find((t) => domainChecks.get(t)?.some(fnOpaque));
      if (domainArg !== undefined) {
        changed = mark(
          f,
          `its arguments or result are of type ${describeObject(objectNames, domainArg)}, whose domain CHECK is opaque`,
        );
        continue;
      }
      const viaDefault = defaultCalls.get(f.oid)?.find(fnOpaque);
      if (viaDefault !== undefined) {
        changed = mark(
          f,
          `an argument default calls ${describe(functions.get(viaDefault), viaDefault)}, which is opaque`,
        );
        continue;
      }
      if (f.kind === "a") {
        const via = (support.get(f.oid) ?? []).find(fnOpaque);
        if (via !== undefined)
          changed = mark(f, `its support function ${describe(functions.get(via), via)} is opaque`);
        continue;
      }
      if (TRUSTED_LANGUAGES.has(f.language)) continue;
      const body = bodies.get(f.oid);
      const word = body ? [...body.words].find((w) => opaqueNames.has(w)) : undefined;
      const op = body ? [...opaqueOperators].find((o) => body.raw.includes(o)) : undefined;
      if (word !== undefined) changed = mark(f, `its body mentions ${word}, which is opaque`);
      else if (op !== undefined) changed = mark(f, `its body mentions operator ${op}, which is opaque`);
    }
  }

  const relationsByName = new Map<string, RelationEffects[]>();
  for (const r of relations) if (r.reads.length || r.writes.length) push(relationsByName, r.name, r);
  const domainsByName = new Map<string, DomainEffects[]>();
  for (const d of domains) if (d.checks.length) push(domainsByName, d.name, d);
  const opaqueTypes = new Set<number>();
  for (const d of domains)
    if (d.checks.some(fnOpaque)) {
      opaqueTypes.add(d.oid);
      const array = arrayOf.get(d.oid);
      if (array !== undefined) opaqueTypes.add(array);
    }
  const implicitOpaque: CatalogFunction[] = [];
  const eventTriggerOpaque: CatalogFunction[] = [];
  for (const r of rows.implicit) {
    const oid = num(r.fn);
    const f = functions.get(oid);
    if (!f || f.opaque !== undefined)
      (text(r.kind) === "e" ? eventTriggerOpaque : implicitOpaque).push(f ?? unknownFunction(oid));
  }
  return {
    fingerprint: rows.fingerprint,
    functions,
    functionsByName,
    operatorsByName,
    relationsByName,
    domainsByName,
    opaqueTypes,
    implicitOpaque,
    eventTriggerOpaque,
    ...(builtin ? { builtin } : {}),
  };
}

/** Stands for a name a definition calls that the catalog cannot resolve: never a real OID. */
const UNRESOLVED = -1;
/** Stands for a non-SELECT rewrite rule of a written relation (it runs its own statements). */
export const REWRITE_RULE = -2;

function describeObject(names: ReadonlyMap<number, { schema: string; name: string }>, oid: number): string {
  const o = names.get(oid);
  return o ? `${o.schema}.${o.name}` : `type ${oid}`;
}

/** Overloads a call may resolve to: by name, schema when qualified, and argument count. */
export function candidates(
  byName: ReadonlyMap<string, readonly CatalogFunction[]>,
  ref: RoutineRef,
): CatalogFunction[] {
  const all = byName.get(ref.name) ?? [];
  return all.filter(
    (f) => (ref.schema === undefined || f.schema === ref.schema) && arityMatches(f, ref.args),
  );
}

function arityMatches(f: CatalogFunction, args: number | undefined): boolean {
  if (args === undefined) return true;
  if (f.variadic && args >= f.nargs - 1 - f.nargdefaults) return true;
  return args <= f.nargs && args >= f.nargs - f.nargdefaults;
}

function unknownFunction(oid: number): CatalogFunction {
  return {
    oid,
    schema: "",
    name: `function ${oid}`,
    kind: "f",
    volatility: "volatile",
    language: "",
    nargs: 0,
    nargdefaults: 0,
    variadic: false,
    opaque: "not in the catalog",
  };
}

/** `schema.name` of a function, or its OID when the catalog does not know it. */
export function describe(f: CatalogFunction | undefined, oid: number): string {
  if (oid === UNRESOLVED) return "(a name in a definition the catalog does not resolve)";
  if (oid === REWRITE_RULE) return "(a rewrite rule: CREATE RULE ... DO ALSO/INSTEAD)";
  return f ? `${f.schema}.${f.name}` : `function ${oid}`;
}

// ---------------------------------------------------------------------------------------------

/**
 * Catalogs per database (the key is the caller's: e.g. `host:port/database`). `get` runs the
 * fingerprint query every time and reloads only when it changed; concurrent calls for one key
 * share one load. A failed load is not cached (the caller fails closed and may retry).
 */
export class CatalogCache {
  readonly #entries = new Map<string, { catalog: Catalog; checkedAt: number }>();
  /** Built-in halves by server version: the same for every database of that version. */
  readonly #builtins = new Map<string, BuiltinPart>();
  readonly #loading = new Map<string, Promise<Catalog>>();
  loads = 0;

  /**
   * The catalog of `key`, re-checking its fingerprint unless it was checked within `maxAgeMs`
   * (default 0: always check).
   */
  async get(
    key: string,
    query: CatalogQuery,
    opts: { maxAgeMs?: number; parser?: SqlParser } = {},
  ): Promise<Catalog> {
    const cached = this.#entries.get(key);
    if (cached && opts.maxAgeMs && Date.now() - cached.checkedAt < opts.maxAgeMs) return cached.catalog;
    const pending = this.#loading.get(key);
    if (pending) return pending;
    const run = (async () => {
      const fingerprint = text((await query(FINGERPRINT_SQL))[0]?.fingerprint);
      const checkedAt = Date.now();
      const current = this.#entries.get(key);
      if (current && current.catalog.fingerprint === fingerprint) {
        current.checkedAt = checkedAt;
        return current.catalog;
      }
      this.loads++;
      const version = fingerprint.split(" ")[0] ?? "";
      const builtin = this.#builtins.get(version);
      const catalog = await loadCatalog(query, {
        fingerprint,
        ...(builtin ? { builtin } : {}),
        ...(opts.parser ? { parser: opts.parser } : {}),
      });
      if (catalog.builtin) this.#builtins.set(catalog.builtin.version, catalog.builtin);
      this.#entries.set(key, { catalog, checkedAt });
      return catalog;
    })();
    this.#loading.set(key, run);
    try {
      return await run;
    } finally {
      this.#loading.delete(key);
    }
  }

  /** The last catalog loaded for `key`, without asking the server (undefined before any load). */
  peek(key: string): Catalog | undefined {
    return this.#entries.get(key)?.catalog;
  }

  /** Forget `key` (after DDL this process ran on it): the next `get` reloads. */
  invalidate(key: string): void {
    const current = this.#entries.get(key);
    // Keep the built-in half: only the fingerprint check is forced.
    if (current) current.checkedAt = 0;
  }
}
