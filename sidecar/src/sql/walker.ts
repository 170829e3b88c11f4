// The walk of one statement's parse tree (libpg-query JSON): its kind, the tables, columns,
// functions, operators and casts it touches, the data-modifying statements nested in it, what it
// does to the session's named objects, and the constructs that are always denied. The rules it
// applies are summarized at the top of classify.ts.
import type { SqlKind } from "../policy/types.ts";
import { isObj, type Node, str, stringList } from "./ast.ts";
import type { BuiltinDenial, SessionEffect } from "./classification.ts";
import { Collect } from "./collect.ts";
import { copyOutOf, renames, targetColumns, writtenColumns } from "./data-flow.ts";
import {
  DENIED_FUNCTION_NAMES,
  DENIED_FUNCTION_PREFIXES,
  deniedFunction,
  guardedSetting,
} from "./deny-list.ts";
import { pgDurationMs } from "./pg-duration.ts";
import { DML, isAdvisoryUnlockAll, setConfigCall, topKind } from "./statement-kind.ts";

/** Set whenever the walk reads a literal's value (see literals.ts). */
let literalsRead = false;
/** Locations of the numeric A_Const nodes met while walking (see literals.ts). */
let numericConstants = new Set<number>();

/**
 * Starts recording what the walks read of literals; the function returned tells what was read
 * since (classify.ts caches a text's result for every text of its numeric shape only when no
 * literal's value mattered).
 */
export function recordLiterals(): () => { readLiterals: boolean; constants: ReadonlySet<number> } {
  literalsRead = false;
  numericConstants = new Set();
  return () => ({ readLiterals: literalsRead, constants: numericConstants });
}

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

/** The values a storing statement writes and the columns they come from (`Collect.written`). */
function recordWritten(type: string, body: Node, out: Collect) {
  const written = writtenColumns(
    type,
    body,
    () => out.columnList(),
    (n) => out.isRowSource(n),
  );
  if (written) out.written = written;
}

export class Walker {
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
        // Parameters of a domain type run its CHECKs at every EXECUTE.
        this.visit(body.argtypes, undefined, inner.collect);
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
    if (Array.isArray(value.names) && "typemod" in value) {
      this.visitNode("TypeName", value, scope, out);
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
          else if (isObj(last) && isObj(last.String)) out.fieldNames.add(str(last.String.sval) ?? "");
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
      // Operators the grammar implies without naming them (resolved by name like any other, so a
      // database's own `=` for the operand types is what runs): `CASE x WHEN y`, `JOIN ... USING`,
      // `NATURAL JOIN`, `x IN (SELECT ...)`; `ORDER BY x USING op` names its operator.
      case "A_Indirection":
        // `(o).f`: a field, or the call f(o) (attribute notation).
        for (const i of Array.isArray(body.indirection) ? body.indirection : [])
          if (isObj(i) && isObj(i.String)) out.fieldNames.add(str(i.String.sval) ?? "");
        this.visit(body, scope, out);
        return;
      case "CaseExpr":
        if (isObj(body.arg)) out.operator(["="]);
        this.visit(body, scope, out);
        return;
      case "JoinExpr":
        if (body.isNatural === true || (Array.isArray(body.usingClause) && body.usingClause.length > 0))
          out.operator(["="]);
        this.visit(body, scope, out);
        return;
      case "SortBy":
        if (Array.isArray(body.useOp) && body.useOp.length > 0) out.operator(stringList(body.useOp));
        this.visit(body, scope, out);
        return;
      case "SubLink":
        if (Array.isArray(body.operName) && body.operName.length > 0) out.operator(stringList(body.operName));
        else if (body.subLinkType === "ANY_SUBLINK") out.operator(["="]);
        this.visit(body.testexpr, scope, out);
        this.visit(body.subselect, scope, out);
        return;
      case "TypeName":
        // Every type the text names, not only casts: a value coerced to a domain (or to a
        // composite with a domain field) runs its CHECKs — column definition lists
        // (`AS x(a d)`), PREPARE parameter types, XMLTABLE columns, typed literals (`d '1'`).
        out.cast(stringList(body.names));
        this.visit(body.typmods, scope, out);
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
        recordWritten(type, body, out);
        this.visit(body.object, scope, out);
        return;
      }
      case "CreateTableAsStmt": {
        if (isObj(body.into) && isObj(body.into.rel)) out.tables.add(rangeVarName(body.into.rel));
        this.visit(body.query, scope, out);
        recordWritten(type, body, out);
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
    recordWritten(type, body, target);
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
