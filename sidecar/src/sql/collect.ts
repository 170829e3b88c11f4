// What one walk of a statement's parse tree collects: the relations, routines, operators, casts,
// settings and column references the guard and masking judge. classify.ts fills it; the
// data-flow helpers (data-flow.ts) read its FROM items.
import type { ClassifiedStatement } from "./classification.ts";
import type { CopyOut, StoredValue } from "./data-flow.ts";

/** A function call as written: `schema` only when qualified; `args` undefined when the count is not plain (named or VARIADIC arguments). */
export interface RoutineRef {
  schema?: string;
  name: string;
  args?: number;
}

export interface OperatorRef {
  schema?: string;
  name: string;
}

export interface TypeRef {
  schema?: string;
  name: string;
}

const refKey = (schema: string | undefined, name: string, args?: number) =>
  `${schema ?? ""}\u0001${name}\u0001${args ?? ""}`;

export class Collect {
  readonly tables = new Set<string>();
  readonly functions = new Set<string>();
  readonly routines = new Map<string, RoutineRef>();
  readonly operators = new Map<string, OperatorRef>();
  readonly casts = new Map<string, TypeRef>();
  readonly settings = new Set<string>();
  /** See ClassifiedStatement.fieldCalls. */
  readonly fieldNames = new Set<string>();
  /** Referenced column names (lower-cased last field of every column reference). */
  readonly columns = new Set<string>();
  /** Single-field references (`c`), which are whole rows when `c` names a FROM item. */
  readonly singles = new Set<string>();
  /** Relation names and aliases of FROM items. */
  readonly relations = new Set<string>();
  /**
   * Aliases of functions in FROM (`unnest(a) x`): a bare `x` is the function's output, derived
   * from its arguments (named where they are written), not a table's whole row.
   */
  readonly functionAliases = new Set<string>();
  /** Aliases and names of FROM items other than functions (tables, views, subqueries, CTEs, joins). */
  readonly rowSources = new Set<string>();
  /** Top-level SELECT: the columns each output column's expression references (see targetColumns). */
  targets?: string[][];
  copyOut?: CopyOut;
  /** See ClassifiedStatement.written. */
  written?: StoredValue[];
  /** See ClassifiedStatement.renamesColumns. */
  renamesColumns = false;
  merge(other: Collect) {
    this.renamesColumns ||= other.renamesColumns;
    for (const t of other.tables) this.tables.add(t);
    for (const f of other.functions) this.functions.add(f);
    for (const c of other.columns) this.columns.add(c);
    for (const c of other.singles) this.singles.add(c);
    for (const r of other.relations) this.relations.add(r);
    for (const r of other.functionAliases) this.functionAliases.add(r);
    for (const r of other.rowSources) this.rowSources.add(r);
    for (const [k, v] of other.routines) this.routines.set(k, v);
    for (const [k, v] of other.operators) this.operators.set(k, v);
    for (const [k, v] of other.casts) this.casts.set(k, v);
    for (const c of other.settings) this.settings.add(c);
    for (const c of other.fieldNames) this.fieldNames.add(c);
  }
  routine(parts: readonly string[], args: number | undefined) {
    const name = parts[parts.length - 1] ?? "";
    const schema = parts.length > 1 ? parts[parts.length - 2] : undefined;
    this.routines.set(refKey(schema, name, args), {
      ...(schema ? { schema } : {}),
      name,
      ...(args === undefined ? {} : { args }),
    });
  }
  operator(parts: readonly string[]) {
    const name = parts[parts.length - 1] ?? "";
    const schema = parts.length > 1 ? parts[parts.length - 2] : undefined;
    this.operators.set(refKey(schema, name), { ...(schema ? { schema } : {}), name });
  }
  cast(parts: readonly string[]) {
    const name = parts[parts.length - 1] ?? "";
    const schema = parts.length > 1 ? parts[parts.length - 2] : undefined;
    this.casts.set(refKey(schema, name), { ...(schema ? { schema } : {}), name });
  }
  /** The SQL-layer facts every entry carries besides kind and tables. */
  facts(): Pick<
    ClassifiedStatement,
    | "functions"
    | "columns"
    | "routines"
    | "operators"
    | "casts"
    | "customSettings"
    | "fieldCalls"
    | "targets"
    | "copyOut"
    | "written"
    | "renamesColumns"
  > {
    return {
      functions: [...this.functions],
      columns: this.columnList(),
      ...(this.renamesColumns ? { renamesColumns: true as const } : {}),
      ...(this.targets ? { targets: this.targets } : {}),
      ...(this.copyOut ? { copyOut: this.copyOut } : {}),
      ...(this.written ? { written: this.written } : {}),
      routines: [...this.routines.values()],
      operators: [...this.operators.values()],
      casts: [...this.casts.values()],
      ...(this.settings.size ? { customSettings: [...this.settings] } : {}),
      ...(this.fieldNames.size ? { fieldCalls: [...this.fieldNames] } : {}),
    };
  }
  /** Column names, with "*" when a whole row is referenced (`row_to_json(c)`, `f(t.*)`, `SELECT c FROM t c`). */
  columnList(): string[] {
    const out = [...this.columns];
    if (!this.columns.has("*") && [...this.singles].some((s) => this.isRowSource(s))) out.push("*");
    return out;
  }
  /** Whether a bare name may be a whole row: it names a FROM item that is not only a function. */
  isRowSource(name: string): boolean {
    return this.relations.has(name) && !(this.functionAliases.has(name) && !this.rowSources.has(name));
  }
}
