// Masking of result rows (DataRow) by the columns a RowDescription names, and of values that
// leak through error and notice messages. Text-format values are rewritten by the masker;
// binary-format values are read per type (binary-values.ts), and a binary column the guard cannot
// mask is refused before any row is sent.
import type { Masker } from "../../masking/index.ts";
import type { ConnectionMasking } from "../../operations/masking.ts";
import {
  type BinaryKind,
  binaryKindOf,
  binaryMayNeedMasking,
  binaryRefusal,
  maskBinaryValue,
} from "./binary-values.ts";
import {
  buildErrorFields,
  type Column,
  cstr,
  int16,
  int32,
  message,
  ProtocolError,
  parseErrorFields,
  Reader,
  T,
} from "./protocol.ts";

export interface MaskState {
  masker: Masker;
  /** Lower-cased column names masked whole, in rule order. */
  columns: ReadonlySet<string>;
  /** Detectors scan every text value. */
  detectors: boolean;
}

/**
 * The response-side masking of a connection (from the shared resolution), or undefined when
 * nothing is masked. Throws a ProtocolError when the rules do not compile (fail closed).
 */
export function createMaskState(masking: ConnectionMasking): MaskState | undefined {
  const slot = masking.response;
  if ("error" in slot)
    throw new ProtocolError(
      `this connection's masking rules are unusable, so nothing is forwarded: ${slot.error}`,
      "XX000",
    );
  const masker = slot.masker;
  if (!masker) return undefined;
  const columns = new Set(masking.responseRules.flatMap((r) => r.columns ?? []).map((c) => c.toLowerCase()));
  const detectors = masker.textDetectors.length > 0;
  if (columns.size === 0 && !detectors) return undefined;
  return { masker, columns, detectors };
}

export interface ResultPlan {
  /** Per column: the name to mask the value as (a column rule's column, or its own name), or undefined. */
  names: readonly (string | undefined)[];
  /** Per column: a column rule masks it whole (otherwise only detectors look at it). */
  ruled: readonly boolean[];
  /**
   * Per column: masked as a covered column it is not itself (computed from one, a whole row, a
   * view's column): `partial` does not apply, the value is redacted whole (see Masker.maskColumn).
   */
  derived: readonly boolean[];
  /** Per column: how a binary-format value masking looks at is read (undefined: text format). */
  binary: readonly (BinaryKind | undefined)[];
  /** Per column: its name in the result (for errors). */
  labels: readonly string[];
  any: boolean;
  /** Set when the result must not be sent (a masked column in binary format). */
  refused?: string;
}

/** What the session knows beyond the column names. */
export interface ResultContext {
  /**
   * `tableOid:attnum` → column name, for table columns that column rules cover (aliases keep their
   * origin) and for the value columns of the statistics catalogs; `tableOid:0` for the whole row
   * of a table with a covered column; `viewOid:*` for every column of a view that depends on one
   * (see originsQuery).
   */
  origins?: ReadonlyMap<string, string>;
  /** Database-defined types readable in binary (citext, enums: see TEXT_TYPES_QUERY). */
  types?: ReadonlyMap<number, BinaryKind>;
  /** Column names (and "*" for whole rows) the statements reference: computed columns derived from a masked column are masked as it. */
  referenced?: readonly string[];
  /** One plain SELECT: what each output column's own expression references (taints per column). */
  targets?: readonly (readonly string[])[];
  /**
   * The catalog may have changed since `origins` were read (the session's own DDL not yet reread,
   * or not yet committed): any column could hold covered data under a name origins do not know,
   * so every column is masked whole.
   */
  uncertain?: boolean;
}

/** Format of column i given Bind's result format codes ([] text, [f] all f, else per column). */
export function formatOf(formats: readonly number[], i: number): number {
  if (formats.length === 0) return 0;
  if (formats.length === 1) return formats[0] as number;
  return formats[i] ?? 0;
}

/** The first covered column: what a value that may derive from any of them is masked as. */
function firstCovered(state: MaskState): string | undefined {
  return state.columns.values().next().value;
}

/** The masked column a computed result column is treated as, if the statement references one. */
export function taintOf(state: MaskState, referenced: readonly string[] | undefined): string | undefined {
  if (!referenced?.length || state.columns.size === 0) return undefined;
  for (const c of referenced) if (state.columns.has(c)) return c;
  return referenced.includes("*") ? firstCovered(state) : undefined;
}

/**
 * Which columns of a result are masked, and as what. A column is masked by a column rule when its
 * name matches, when it comes from a covered table column under another name (RowDescription
 * keeps the origin through aliases, subqueries and views), or when it is computed (no origin) in
 * a statement that references a covered column or a whole row. Detectors scan every text column.
 * `formats`: Bind's result formats when known; otherwise each column's own format code.
 */
export function planResult(
  state: MaskState,
  columns: readonly Column[],
  formats?: readonly number[],
  context: ResultContext = {},
): ResultPlan {
  const names: (string | undefined)[] = [];
  const ruled: boolean[] = [];
  const derived: boolean[] = [];
  const binary: (BinaryKind | undefined)[] = [];
  const labels = columns.map((c) => c.name);
  let any = false;
  let refused: string | undefined;
  const wholeTaint = taintOf(state, context.referenced);
  const perColumn = context.targets?.length === columns.length ? context.targets : undefined;
  columns.forEach((c, i) => {
    const taint = perColumn ? taintOf(state, perColumn[i]) : wholeTaint;
    const lower = c.name.toLowerCase();
    // The covered column itself: a table column (attnum > 0) the catalog says is covered.
    const own =
      c.tableOid !== 0 && c.attnum > 0 ? context.origins?.get(`${c.tableOid}:${c.attnum}`) : undefined;
    const rule =
      own ??
      (state.columns.has(lower) ? c.name : undefined) ??
      (c.tableOid !== 0
        ? (context.origins?.get(`${c.tableOid}:${c.attnum}`) ?? context.origins?.get(`${c.tableOid}:*`))
        : undefined) ??
      (c.tableOid === 0 ? taint : undefined) ??
      (context.uncertain ? firstCovered(state) : undefined);
    const as = rule ?? (state.detectors ? c.name : undefined);
    const format = formats ? formatOf(formats, i) : c.format;
    const binaryKind = as !== undefined && format !== 0 ? binaryKindOf(c.typeOid, context.types) : undefined;
    if (as !== undefined && format !== 0)
      refused ??= binaryRefusal(c.name, c.typeOid, rule !== undefined, context.types);
    names.push(as);
    ruled.push(rule !== undefined);
    derived.push(rule !== undefined && own === undefined);
    binary.push(binaryKind);
    any ||= as !== undefined;
  });
  return { names, ruled, derived, binary, labels, any, ...(refused ? { refused } : {}) };
}

/** `attnum` of originsQuery rows that name a function defined outside the system schemas. */
export const USER_FUNCTION = -1;
/** `attnum` of originsQuery rows for a view that depends on a covered column: all its columns. */
export const VIEW_ALL = -2;
/** `attnum` of originsQuery rows that name a relation whose columns may all carry covered data. */
export const RELATION_NAME = -3;
/** `attnum` of originsQuery rows naming a relation outside pg_catalog whose name starts `pg_`. */
export const CATALOG_SHADOW = -4;

/**
 * Whether every relation the statements read is a system catalog: `pg_catalog.x`, or a bare
 * `pg_x` that no relation outside pg_catalog shadowed at connect (`shadows`). Their rows hold no
 * table data; the statistics catalogs that do are covered relations (readsRelation). A temporary
 * `pg_x` created later in the session would shadow a bare name: that needs CREATE, which already
 * opens the window every table created after connect has (origins are learned at connect).
 */
export function readsOnlySystemCatalogs(
  statements: readonly { tables: readonly string[] }[],
  shadows: ReadonlySet<string>,
): boolean {
  for (const s of statements)
    for (const t of s.tables) {
      const dot = t.lastIndexOf(".");
      const name = t.slice(dot + 1).toLowerCase();
      const schema = dot < 0 ? undefined : t.slice(0, dot).toLowerCase();
      if (schema !== undefined ? schema !== "pg_catalog" : !name.startsWith("pg_") || shadows.has(name))
        return false;
    }
  return true;
}

/**
 * Whether a statement calls a function defined in the database (not a built-in): such a
 * function may read a covered column that the statement never names, so masking treats the
 * statement's computed columns as derived from one (see taintOf). Names compare without schema.
 */
export function callsUserFunction(
  statements: readonly { functions: readonly string[]; fieldCalls?: readonly string[] }[],
  userFunctions: ReadonlySet<string>,
): boolean {
  if (userFunctions.size === 0) return false;
  for (const s of statements)
    for (const f of [...s.functions, ...(s.fieldCalls ?? [])]) {
      const name = f.slice(f.lastIndexOf(".") + 1).toLowerCase();
      if (userFunctions.has(name)) return true;
    }
  return false;
}

/** Whether a statement reads a relation named in `relations` (compared without schema). */
export function readsRelation(
  statements: readonly { tables: readonly string[] }[],
  relations: ReadonlySet<string>,
): boolean {
  if (relations.size === 0) return false;
  for (const s of statements)
    for (const t of s.tables) if (relations.has(t.slice(t.lastIndexOf(".") + 1).toLowerCase())) return true;
  return false;
}

// The planner's statistics hold sample values of every analysed column: most common values,
// histogram bounds, most common array elements (and the extended statistics' MCV lists).
const STATISTICS_VALUES = `(c.relname = 'pg_statistic' AND a.attname LIKE 'stavalues%')
      OR (c.relname = 'pg_statistic_ext_data' AND a.attname IN ('stxdmcv', 'stxdexpr'))
      OR (c.relname IN ('pg_stats', 'pg_stats_ext', 'pg_stats_ext_exprs')
        AND a.attname IN ('most_common_vals', 'histogram_bounds', 'most_common_elems'))`;

/**
 * SQL listing where the data column rules cover can be read from, as `relationOid, attnum, name`
 * rows:
 * - `attnum > 0`: the covered table columns themselves, and the value columns of the statistics
 *   catalogs (masked as the first covered column);
 * - `0`: the whole row of a table with a covered column (`SELECT c FROM customers c`, which
 *   PostgreSQL describes as the table's column 0);
 * - VIEW_ALL: every view or materialized view that depends on a covered column (through its rewrite
 *   rule, transitively: views of views). A view's result columns carry the view's oid, not the
 *   table's, so a view that renames `email` to `contact` would otherwise hand the agent unmasked
 *   addresses; every column of such a view is masked (over-masking a view that only filters by
 *   one is the safe side);
 * - `0, RELATION_NAME, name`: those views and the statistics views by name, for computed columns
 *   over them (see ResultMasking);
 * - `0, USER_FUNCTION, name`: the functions defined outside the system schemas (callsUserFunction);
 * - `0, CATALOG_SHADOW, name`: relations outside pg_catalog named like a catalog (readsOnlySystemCatalogs).
 */
export function originsQuery(state: MaskState): string | undefined {
  if (state.columns.size === 0) return undefined;
  const names = [...state.columns].map((c) => `'${c.replace(/'/g, "''")}'`).join(", ");
  const first = `'${([...state.columns][0] ?? "").replace(/'/g, "''")}'`;
  // Views and materialized views whose rewrite rule reads a relation's columns (`on` narrows to
  // which); rules a table may have on itself are not views and are left out.
  const viewsOf = (from: string, on: string) => `SELECT v.oid, ${from}.name FROM ${from}
    JOIN pg_catalog.pg_depend d ON d.refobjid = ${from}.rel${on}
      AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
      AND d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
    JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
    JOIN pg_catalog.pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm')
    WHERE v.oid <> ${from}.rel`;
  // A column whose type is a composite (or an array of one) with a covered field holds that
  // field's values (`wallets.card` of type card_t(card_number, ...)), and so on through nesting;
  // the relations that hold one are covered relations: their computed columns (`card::text`)
  // are masked too.
  const composites = (from: string) => `SELECT a.attrelid, a.attnum, ${from}.name FROM ${from}
      JOIN pg_catalog.pg_type ty ON ty.typrelid = ${from}.rel
      JOIN pg_catalog.pg_attribute a ON (a.atttypid = ty.oid OR a.atttypid = ty.typarray) AND a.attnum > 0 AND NOT a.attisdropped`;
  return `WITH RECURSIVE covered(rel, attnum, name) AS (
    SELECT attrelid, attnum, lower(attname) FROM pg_catalog.pg_attribute
    WHERE attnum > 0 AND NOT attisdropped AND lower(attname) IN (${names})
    UNION
    ${composites("covered")}
  ), dependents(rel, name) AS (
    ${viewsOf("covered", " AND d.refobjsubid = covered.attnum")}
    UNION
    ${viewsOf("dependents", "")}
  ), views AS (SELECT DISTINCT ON (rel) rel, name FROM dependents ORDER BY rel, name)
  SELECT rel::pg_catalog.int8, attnum, name FROM covered
  UNION ALL
  (SELECT DISTINCT ON (rel) rel::pg_catalog.int8, 0, name FROM covered ORDER BY rel, name)
  UNION ALL
  SELECT rel::pg_catalog.int8, ${VIEW_ALL}, name FROM views
  UNION ALL
  SELECT 0::pg_catalog.int8, ${RELATION_NAME}, lower(c.relname) FROM views JOIN pg_catalog.pg_class c ON c.oid = views.rel
  UNION ALL
  SELECT DISTINCT 0::pg_catalog.int8, ${RELATION_NAME}, lower(c.relname) FROM covered
    JOIN pg_catalog.pg_attribute a ON a.attrelid = covered.rel AND a.attnum = covered.attnum
    JOIN pg_catalog.pg_class c ON c.oid = covered.rel
    WHERE lower(a.attname) <> covered.name AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  UNION ALL
  SELECT c.oid::pg_catalog.int8, a.attnum, ${first} FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
    WHERE c.relnamespace = 'pg_catalog'::pg_catalog.regnamespace AND (${STATISTICS_VALUES})
  UNION ALL
  SELECT 0::pg_catalog.int8, ${RELATION_NAME}, n FROM pg_catalog.unnest(ARRAY['pg_stats', 'pg_stats_ext', 'pg_stats_ext_exprs', 'pg_statistic', 'pg_statistic_ext_data']) n
  UNION ALL
  SELECT DISTINCT 0::pg_catalog.int8, ${USER_FUNCTION}, lower(p.proname) FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  UNION ALL
  SELECT DISTINCT 0::pg_catalog.int8, ${CATALOG_SHADOW}, lower(c.relname) FROM pg_catalog.pg_class c
    WHERE c.relname LIKE 'pg\\_%' AND c.relnamespace <> 'pg_catalog'::pg_catalog.regnamespace`;
}

/**
 * A masked DataRow message, or undefined when nothing changed (the original bytes are sent).
 * `counts` accumulates findings by detector ("column" for whole-column rules).
 */
export function maskDataRow(
  state: MaskState,
  plan: ResultPlan,
  payload: Buffer,
  counts: Record<string, number>,
): Buffer | undefined {
  const r = new Reader(payload);
  const n = r.int16("column count");
  let parts: Buffer[] | undefined;
  let lastEnd = 2; // payload offset copied so far
  for (let i = 0; i < n; i++) {
    const len = r.int32("value length");
    if (len < 0) continue;
    const start = r.skip(len, "value");
    const pos = start + len;
    const as = plan.names[i];
    if (as === undefined) continue;
    const kind = plan.binary[i];
    if (kind) {
      if (!binaryMayNeedMasking(state.masker, kind, plan.ruled[i] === true, payload, start, pos)) continue;
      const masked = maskBinaryValue(
        state.masker,
        kind,
        as,
        plan.labels[i] ?? as,
        payload.subarray(start, pos),
        counts,
        plan.derived[i] === true,
      );
      if (!masked) continue;
      parts ??= [];
      parts.push(payload.subarray(lastEnd, start - 4), int32(masked.length), masked);
      lastEnd = pos;
      continue;
    }
    // Decoding and scanning cost more than the rest of the row: skip values no detector can match.
    if (!plan.ruled[i] && !state.masker.mayDetect(payload, start, pos)) continue;
    // (Invalid UTF-8 becomes U+FFFD, as decodeLoose; a leading BOM is kept.)
    const text = payload.toString("utf8", start, pos);
    const res = state.masker.maskColumn(as, text, { derived: plan.derived[i] === true });
    if (res.findings.length === 0 || res.value === text) continue;
    for (const f of res.findings) counts[f.detector] = (counts[f.detector] ?? 0) + 1;
    const masked = Buffer.from(res.value, "utf8");
    parts ??= [];
    parts.push(payload.subarray(lastEnd, start - 4), int32(masked.length), masked);
    lastEnd = pos;
  }
  if (!parts) return undefined;
  parts.push(payload.subarray(lastEnd));
  const body = Buffer.concat([int16(n), ...parts]);
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = T.DataRow;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

/**
 * Whether the DataRow whose payload is `buf[start, end)` has a value masking would look at (a
 * column-rule column, or a value some detector may match). A row that does not is passed on as it
 * is, in a run with its neighbours. A malformed row answers true: maskDataRow reports it.
 */
export function rowNeedsMasking(
  state: MaskState,
  plan: ResultPlan,
  buf: Buffer,
  start: number,
  end: number,
): boolean {
  if (end - start < 2) return true;
  const n = buf.readInt16BE(start);
  let off = start + 2;
  for (let i = 0; i < n; i++) {
    if (off + 4 > end) return true;
    const len = buf.readInt32BE(off);
    off += 4;
    if (len < 0) continue;
    if (off + len > end) return true;
    const kind = plan.binary[i];
    if (
      plan.names[i] !== undefined &&
      (kind
        ? binaryMayNeedMasking(state.masker, kind, plan.ruled[i] === true, buf, off, off + len)
        : plan.ruled[i] || state.masker.mayDetect(buf, off, off + len))
    )
      return true;
    off += len;
  }
  return off !== end;
}

// SQLSTATE classes whose messages echo input values: data exceptions ("invalid input syntax for
// type integer: "4111 1111 1111 1111"") and integrity violations ("Key (email)=(a@b.c) exists").
const VALUE_ECHO_CLASSES = new Set(["22", "23"]);
const QUOTED = /"(?:[^"]|"")*"/g;

// Free-text fields of an error or notice: message, detail, hint, context, internal query.
const TEXT_FIELDS = new Set(["M", "D", "H", "W", "q"]);

/**
 * ErrorResponse/NoticeResponse with values that could bypass masking removed, then every text
 * field passed through the detectors. Undefined when nothing changed.
 * - `tainted` (the statement reads covered data, see ResultMasking): any message raised while it
 *   ran may quote a covered value, in any words (`relation "4111…" does not exist`, a function's
 *   `RAISE NOTICE '%'`), so the texts are withheld; the SQLSTATE, severity and the names of the
 *   objects involved stay. A message with a position (`P`) was raised while the statement was
 *   parsed and analysed, before any row was read, and is kept.
 * - Data and integrity errors (classes 22, 23) echo input values whatever the statement: their
 *   detail is dropped and quoted values in the message redacted.
 */
export function redactNotice(
  state: MaskState,
  type: number,
  payload: Buffer,
  counts: Record<string, number>,
  tainted = false,
) {
  const fields = parseErrorFields(payload);
  const code = fields.get("C") ?? "";
  if (tainted && !fields.has("P")) {
    const out = new Map<string, string>();
    for (const [k, v] of fields)
      if (k === "M")
        out.set(
          k,
          `message withheld by Airlock (SQLSTATE ${code || "unknown"}): the statement reads masked columns, and the server's text may quote their values`,
        );
      else if (!TEXT_FIELDS.has(k)) out.set(k, v);
    counts.column = (counts.column ?? 0) + 1;
    return buildErrorFields(type, out);
  }
  let changed = false;
  const out = new Map<string, string>();
  for (const [k, v] of fields) {
    let value = v;
    if (VALUE_ECHO_CLASSES.has(code.slice(0, 2))) {
      if (k === "D") {
        value = "detail withheld by Airlock: it may contain masked values";
      } else if (k === "M") {
        value = value.replace(QUOTED, '"[REDACTED]"');
      }
    }
    if (k === "M" || k === "D" || k === "H" || k === "W" || k === "q") {
      const r = state.masker.maskText(value);
      if (r.findings.length) {
        value = r.text;
        for (const f of r.findings) counts[f.detector] = (counts[f.detector] ?? 0) + 1;
      }
    }
    if (value !== v) changed = true;
    out.set(k, value);
  }
  return changed ? buildErrorFields(type, out) : undefined;
}

/**
 * A NotificationResponse (pid, channel, payload) with detectors applied to its payload, or
 * undefined when nothing was found. NOTIFY payloads are free text the agent did not ask for in a
 * query — another session's `pg_notify` — so they pass the same detectors as result values.
 */
export function maskNotification(state: MaskState, payload: Buffer, counts: Record<string, number>) {
  if (!state.detectors) return undefined;
  const r = new Reader(payload);
  const pid = r.int32();
  const channel = r.cstr();
  const text = r.cstr();
  const masked = state.masker.maskText(text);
  if (masked.findings.length === 0) return undefined;
  for (const f of masked.findings) counts[f.detector] = (counts[f.detector] ?? 0) + 1;
  return message(T.NotificationResponse, int32(pid), cstr(channel), cstr(masked.text));
}
