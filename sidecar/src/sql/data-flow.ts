// Masking data flow: which columns a statement's output carries. PostgreSQL describes a result
// column's origin only when it is a plain column of a table; these helpers find, from the parse
// tree, what the rest may carry (computed columns, whole rows, renames) so masking can taint it.
import { isObj, type Node, str } from "./ast.ts";

/** A COPY ... TO STDOUT as the rows will come: its columns when listed, its format, its options. */
export interface CopyOut {
  /** The table's column list as written (lower-cased); undefined for `COPY t` and `COPY (query)`. */
  columns?: readonly string[];
  format: "text" | "csv" | "binary";
  /** A header line comes first (CSV). */
  header: boolean;
  /** Only FORMAT and HEADER are given: default delimiter, NULL, quote and escape. */
  plain: boolean;
}

export function copyOutOf(body: Node): CopyOut {
  let format: CopyOut["format"] = "text";
  let header = false;
  let plain = true;
  for (const o of Array.isArray(body.options) ? body.options : []) {
    const d = isObj(o) && isObj(o.DefElem) ? o.DefElem : undefined;
    const name = str(d?.defname);
    const arg = isObj(d?.arg) ? d.arg : undefined;
    if (name === "format") {
      const f = str(isObj(arg?.String) ? arg.String.sval : undefined)?.toLowerCase();
      if (f === "csv" || f === "binary" || f === "text") format = f;
      else plain = false;
    } else if (name === "header") {
      header =
        !(isObj(arg?.Boolean) && arg.Boolean.boolval !== true) &&
        str(isObj(arg?.String) ? arg.String.sval : undefined) !== "false";
    } else plain = false;
  }
  const list = Array.isArray(body.attlist) ? body.attlist : undefined;
  const columns =
    isObj(body.relation) && list?.length
      ? list.map((c) => (isObj(c) && isObj(c.String) ? (str(c.String.sval) ?? "") : "").toLowerCase())
      : undefined;
  return { ...(columns ? { columns } : {}), format, header, plain };
}

/** Whether a FROM item is a table (or a join of tables) that keeps its columns' names. */
function plainFromItem(item: unknown): boolean {
  if (!isObj(item)) return false;
  if (isObj(item.RangeVar)) return !isObj(item.RangeVar.alias) || !renames(item.RangeVar.alias.colnames);
  if (isObj(item.JoinExpr)) {
    const j = item.JoinExpr;
    return (!isObj(j.alias) || !renames(j.alias.colnames)) && plainFromItem(j.larg) && plainFromItem(j.rarg);
  }
  return false;
}

/** Every column reference in a subtree: lower-cased last names, "*" for `t.*`, bare names apart. */
function columnRefs(node: unknown, out: { columns: Set<string>; singles: Set<string> }): void {
  if (Array.isArray(node)) {
    for (const n of node) columnRefs(n, out);
    return;
  }
  if (!isObj(node)) return;
  // A column list inside the expression (a sublink's FROM or WITH) renames what it selects: any
  // name may then stand for a covered column.
  const renamed =
    renames(node.aliascolnames) ||
    (isObj(node.alias) && !Array.isArray(node.functions) && renames(node.alias.colnames));
  if (renamed) out.columns.add("*");
  if (isObj(node.ColumnRef)) {
    const fields = Array.isArray(node.ColumnRef.fields) ? node.ColumnRef.fields : [];
    const last = fields[fields.length - 1];
    if (isObj(last) && isObj(last.A_Star)) out.columns.add("*");
    else {
      const name = (isObj(last) && isObj(last.String) ? (str(last.String.sval) ?? "") : "").toLowerCase();
      out.columns.add(name);
      if (fields.length === 1) out.singles.add(name);
    }
  }
  for (const key in node) if (typeof node[key] === "object") columnRefs(node[key], out);
}

/**
 * Per output column of a plain top-level SELECT, the columns its expression references; undefined
 * when output columns cannot be told apart by their expressions alone (WITH, set operations,
 * VALUES, `*`, or FROM items that rename columns: subqueries, functions, alias column lists).
 * A value reaches an output column only through its own expression (WHERE, GROUP BY and ORDER
 * BY choose rows, they do not carry values into other columns).
 */
export function targetColumns(body: Node, isRowSource: (name: string) => boolean): string[][] | undefined {
  if (body.withClause || (body.op !== undefined && body.op !== "SETOP_NONE") || body.valuesLists)
    return undefined;
  const from = Array.isArray(body.fromClause) ? body.fromClause : [];
  if (!from.every(plainFromItem)) return undefined;
  const targets = Array.isArray(body.targetList) ? body.targetList : [];
  const out: string[][] = [];
  for (const t of targets) {
    const val = isObj(t) && isObj(t.ResTarget) ? t.ResTarget.val : undefined;
    const refs = { columns: new Set<string>(), singles: new Set<string>() };
    columnRefs(val, refs);
    if (isObj(val) && isObj(val.ColumnRef) && refs.columns.has("*")) return undefined; // `*` expands
    const list = [...refs.columns];
    if (!refs.columns.has("*") && [...refs.singles].some((s) => isRowSource(s))) list.push("*");
    out.push(list);
  }
  return out;
}

/**
 * Whether an alias column list (`FROM t AS c(a, b)`, `WITH s(a, b) AS ...`) renames columns by
 * position: any name in the statement may then stand for any column of what it renames, so
 * masking treats it as a whole-row reference ("*").
 */
export function renames(colnames: unknown): boolean {
  return Array.isArray(colnames) && colnames.length > 0;
}

/** The columns `node`'s expressions reference, with "*" for a whole row (`isRowSource`). */
function refsOf(node: unknown, isRowSource: (name: string) => boolean): string[] {
  const refs = { columns: new Set<string>(), singles: new Set<string>() };
  columnRefs(node, refs);
  const out = [...refs.columns];
  if (!refs.columns.has("*") && [...refs.singles].some((s) => isRowSource(s))) out.push("*");
  return out;
}

/** Values a statement stores: computed `from` these columns, into the column `into` when known. */
export interface StoredValue {
  into?: string;
  from: string[];
}

/** The output column name of a SELECT target: its alias, or the column it plainly is. */
function outputName(t: unknown): string | undefined {
  const rt = isObj(t) && isObj(t.ResTarget) ? t.ResTarget : undefined;
  if (!rt) return undefined;
  if (typeof rt.name === "string") return rt.name.toLowerCase();
  const ref = isObj(rt.val) && isObj(rt.val.ColumnRef) ? rt.val.ColumnRef : undefined;
  const fields = ref && Array.isArray(ref.fields) ? ref.fields : [];
  const last = fields[fields.length - 1];
  return isObj(last) && isObj(last.String) ? str(last.String.sval)?.toLowerCase() : undefined;
}

const names = (list: unknown): string[] =>
  (Array.isArray(list) ? list : []).map((c) =>
    isObj(c) && isObj(c.ResTarget)
      ? (str(c.ResTarget.name) ?? "").toLowerCase()
      : isObj(c) && isObj(c.String)
        ? (str(c.String.sval) ?? "").toLowerCase()
        : "",
  );

/**
 * The values a data-writing statement stores in the database (INSERT, UPDATE, MERGE, CREATE
 * TABLE AS, SELECT INTO; a column rename moves them), or undefined when it stores none. Masking follows a value by the column
 * it is read from; once stored under another name it no longer can. Precise for the plain forms
 * (a VALUES list, a plain SELECT, UPDATE ... SET without FROM or WITH: the WHERE that picks rows
 * does not count, and each value's destination column is known when the statement names it);
 * anything else is one value computed from every column the statement references (`all`).
 */
export function writtenColumns(
  type: string,
  body: Node,
  all: () => string[],
  isRowSource: (name: string) => boolean,
): StoredValue[] | undefined {
  const everything = (): StoredValue[] => [{ from: all() }];
  /**
   * Per output position of a query, what it is computed from, stored into `into[i]` — or, when
   * `ownNames` (CREATE TABLE AS, SELECT INTO: the new table's columns are the query's), into the
   * output column's own name.
   */
  const selected = (query: unknown, into: readonly string[], ownNames: boolean): StoredValue[] => {
    const sel = isObj(query) && isObj(query.SelectStmt) ? query.SelectStmt : undefined;
    if (!sel) return query === undefined || query === null ? [] : everything();
    const at = (i: number, own?: string): StoredValue => {
      const name = into[i] || (ownNames ? own : undefined);
      return name ? { into: name, from: [] } : { from: [] };
    };
    if (sel.valuesLists && !sel.withClause) {
      const out: StoredValue[] = [];
      for (const row of sel.valuesLists as unknown[]) {
        const items = isObj(row) && isObj(row.List) && Array.isArray(row.List.items) ? row.List.items : [row];
        items.forEach((v, i) => {
          out.push({ ...at(i), from: refsOf(v, isRowSource) });
        });
      }
      return out;
    }
    const targets = targetColumns(sel, isRowSource);
    if (!targets) return everything();
    const list = Array.isArray(sel.targetList) ? sel.targetList : [];
    return targets.map((from, i) => ({ ...at(i, outputName(list[i])), from }));
  };
  switch (type) {
    case "InsertStmt": {
      if (body.withClause) return everything();
      const conflict = isObj(body.onConflictClause) ? body.onConflictClause.targetList : undefined;
      return [...selected(body.selectStmt, names(body.cols), false), ...assignments(conflict, isRowSource)];
    }
    case "UpdateStmt": {
      const from = Array.isArray(body.fromClause) ? body.fromClause : [];
      if (body.withClause || from.length) return everything();
      return assignments(body.targetList, isRowSource);
    }
    case "MergeStmt":
      return everything();
    case "RenameStmt":
      // ALTER TABLE/VIEW ... RENAME COLUMN: the column's values, under the new name.
      if (body.renameType !== "OBJECT_COLUMN" && body.renameType !== "OBJECT_ATTRIBUTE") return undefined;
      return [
        { into: (str(body.newname) ?? "").toLowerCase(), from: [(str(body.subname) ?? "").toLowerCase()] },
      ];
    case "CreateTableAsStmt": {
      // A materialized view is a view: its columns are masked through its dependencies.
      if (body.objtype === "OBJECT_MATVIEW") return undefined;
      const into = isObj(body.into) ? names(body.into.colNames) : [];
      return selected(body.query, into, true);
    }
    case "SelectStmt":
      return body.intoClause
        ? selected({ SelectStmt: { ...body, intoClause: undefined } }, [], true)
        : undefined;
    default:
      return undefined;
  }
}

/** `SET a = expr` (UPDATE, ON CONFLICT DO UPDATE): each value into its column. */
function assignments(list: unknown, isRowSource: (name: string) => boolean): StoredValue[] {
  return (Array.isArray(list) ? list : []).map((t) => {
    const rt = isObj(t) && isObj(t.ResTarget) ? t.ResTarget : undefined;
    const into = typeof rt?.name === "string" ? rt.name.toLowerCase() : undefined;
    return { ...(into ? { into } : {}), from: refsOf(rt?.val, isRowSource) };
  });
}
