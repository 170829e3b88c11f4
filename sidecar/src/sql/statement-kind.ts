// The kind of a top-level statement, from its parse-tree node type: the part of classification
// that names what a statement is (the walker in classify.ts finds what it touches and calls).

import type { SqlKind } from "../policy/types.ts";
import { isObj, type Node, str, stringList } from "./ast.ts";

/** Reads a literal argument's text (classify.ts: it also records that a literal was read). */
export type ConstText = (v: unknown) => string | undefined;

export const DML: Readonly<Record<string, SqlKind>> = {
  InsertStmt: "insert",
  UpdateStmt: "update",
  DeleteStmt: "delete",
  MergeStmt: "merge",
};

const MAINTENANCE = new Set([
  "VacuumStmt",
  "ClusterStmt",
  "ReindexStmt",
  "CheckPointStmt",
  "RefreshMatViewStmt",
]);
const DROP = new Set([
  "DropStmt",
  "DropdbStmt",
  "DropRoleStmt",
  "DropOwnedStmt",
  "DropTableSpaceStmt",
  "DropUserMappingStmt",
  "DropSubscriptionStmt",
]);
const CREATE_OTHER = new Set([
  "ViewStmt",
  "IndexStmt",
  "RuleStmt",
  "DefineStmt",
  "CompositeTypeStmt",
  "ImportForeignSchemaStmt",
]);
const ALTER_OTHER = new Set(["RenameStmt", "CommentStmt", "SecLabelStmt", "ReassignOwnedStmt"]);
/** PREPARE TRANSACTION / COMMIT PREPARED / ROLLBACK PREPARED: state that outlives the session. */
const TWO_PHASE = new Set([
  "TRANS_STMT_PREPARE",
  "TRANS_STMT_COMMIT_PREPARED",
  "TRANS_STMT_ROLLBACK_PREPARED",
]);

const ACCESS_SHARE_LOCK = 1;

/**
 * `SELECT [pg_catalog.]set_config(name, value, is_local)` alone (name and is_local constants),
 * judged as that SET. The value may be a parameter (`undefined`: any value; asyncpg restores
 * `jit` with `set_config('jit', $1, false)`), and `current_setting(const)` targets may stand
 * beside the call (asyncpg: `SELECT current_setting('jit') AS cur, set_config('jit', 'off',
 * false) AS new`): reading a setting changes nothing.
 */
export function setConfigCall(
  constText: ConstText,
  body: Node,
): { name: string; value: string | undefined } | undefined {
  const keys = Object.keys(body).filter((k) => !["targetList", "limitOption", "op"].includes(k));
  // pg_dump 15.8+: `SELECT set_config(name, 'view, foreign-table', false) FROM pg_settings
  // WHERE name = 'restrict_nonsystem_relation_kind'`: the setting named by the WHERE constant.
  const fromSettings = settingsRow(constText, body);
  if (keys.length && !(fromSettings && keys.every((k) => k === "fromClause" || k === "whereClause")))
    return undefined;
  const list = Array.isArray(body.targetList) ? body.targetList : [];
  const calls = list.map((t) => {
    const rt = isObj(t) && isObj(t.ResTarget) ? t.ResTarget : undefined;
    const fc = rt && isObj(rt.val) && isObj(rt.val.FuncCall) ? rt.val.FuncCall : undefined;
    if (!fc || fc.agg_star || fc.over || fc.func_variadic || fc.agg_filter || fc.agg_order) return undefined;
    const fn = stringList(fc.funcname)
      .map((p) => p.toLowerCase())
      .join(".");
    return { fn: fn.replace(/^pg_catalog\./, ""), args: Array.isArray(fc.args) ? fc.args : [] };
  });
  if (calls.some((c) => c === undefined)) return undefined;
  const sets = calls.filter((c) => c?.fn === "set_config");
  const reads = calls.filter((c) => c?.fn === "current_setting");
  if (sets.length !== 1 || sets.length + reads.length !== calls.length) return undefined;
  for (const r of reads)
    if (!r || r.args.length < 1 || r.args.length > 2 || r.args.some((a) => constText(a) === undefined))
      return undefined;
  const args = sets[0]?.args ?? [];
  if (args.length !== 3 || args.some((a) => isObj(a) && isObj(a.NamedArgExpr))) return undefined;
  const [first, second] = [args[0], args[1]];
  const byColumn =
    fromSettings !== undefined &&
    isObj(first) &&
    isObj(first.ColumnRef) &&
    columnName(first.ColumnRef) === "name";
  const name = byColumn ? fromSettings : constText(first);
  const value = constText(second);
  const param = isObj(second) && isObj(second.ParamRef);
  const local = constText(args[2]);
  if (name === undefined || (value === undefined && !param) || (local !== "true" && local !== "false"))
    return undefined;
  return { name: name.toLowerCase(), value };
}

/** The single column name of a ColumnRef, lower-cased; undefined for qualified or star references. */
function columnName(ref: Node): string | undefined {
  const fields = Array.isArray(ref.fields) ? ref.fields : [];
  const f = fields.length === 1 ? fields[0] : undefined;
  return isObj(f) && isObj(f.String) ? str(f.String.sval)?.toLowerCase() : undefined;
}

/** `FROM [pg_catalog.]pg_settings WHERE name = 'x'`: the constant x; otherwise undefined. */
function settingsRow(constText: ConstText, body: Node): string | undefined {
  const from = Array.isArray(body.fromClause) ? body.fromClause : [];
  const rv = from.length === 1 && isObj(from[0]) && isObj(from[0].RangeVar) ? from[0].RangeVar : undefined;
  if (rv?.relname !== "pg_settings" || rv.alias || (rv.schemaname && rv.schemaname !== "pg_catalog"))
    return undefined;
  const w = isObj(body.whereClause) && isObj(body.whereClause.A_Expr) ? body.whereClause.A_Expr : undefined;
  if (w?.kind !== "AEXPR_OP" || stringList(w.name).join(".") !== "=") return undefined;
  if (!isObj(w.lexpr) || !isObj(w.lexpr.ColumnRef) || columnName(w.lexpr.ColumnRef) !== "name")
    return undefined;
  return constText(w.rexpr)?.toLowerCase();
}

/** `SELECT pg_advisory_unlock_all()` alone (optionally `pg_catalog.`-qualified): releases this session's advisory locks. */
export function isAdvisoryUnlockAll(body: Node): boolean {
  const keys = Object.keys(body).filter((k) => !["targetList", "limitOption", "op"].includes(k));
  if (keys.length) return false;
  const list = Array.isArray(body.targetList) ? body.targetList : [];
  if (list.length !== 1) return false;
  const rt = isObj(list[0]) && isObj(list[0].ResTarget) ? list[0].ResTarget : undefined;
  const fc = rt && isObj(rt.val) && isObj(rt.val.FuncCall) ? rt.val.FuncCall : undefined;
  if (!fc || fc.args !== undefined || fc.agg_star || fc.over) return false;
  const parts = stringList(fc.funcname).map((p) => p.toLowerCase());
  const name = parts.join(".");
  return name === "pg_advisory_unlock_all" || name === "pg_catalog.pg_advisory_unlock_all";
}

export function topKind(type: string, body: Node): SqlKind {
  const dml = DML[type];
  if (dml) return dml;
  switch (type) {
    case "SelectStmt":
      return body.intoClause ? "create" : "select";
    case "TruncateStmt":
      return "truncate";
    case "CopyStmt":
      return body.is_from ? "copyFrom" : "copyTo";
    case "VariableSetStmt":
      return "set";
    case "VariableShowStmt":
      return "show";
    case "TransactionStmt":
      return TWO_PHASE.has(str(body.kind) ?? "") ? "twoPhaseCommit" : "transaction";
    case "ConstraintsSetStmt":
      return "transaction";
    case "CallStmt":
      return "call";
    case "DoStmt":
      return "do";
    case "LockStmt":
      // ACCESS SHARE (pg_dump's lock) conflicts only with ACCESS EXCLUSIVE and is what every
      // SELECT takes anyway: a read. Stronger modes block writers or readers: `lock`.
      return Number(body.mode ?? 0) === ACCESS_SHARE_LOCK ? "select" : "lock";
    case "GrantStmt":
    case "GrantRoleStmt":
      return body.is_grant ? "grant" : "revoke";
    case "AlterDefaultPrivilegesStmt":
      return isObj(body.action) && isObj(body.action.GrantStmt) && !body.action.GrantStmt.is_grant
        ? "revoke"
        : "grant";
    case "FetchStmt":
      return "select";
    case "CreateTableAsStmt":
      return "create";
    case "AlterSystemStmt":
      return "alter";
  }
  if (MAINTENANCE.has(type)) return "maintenance";
  if (DROP.has(type)) return "drop";
  if (type.startsWith("Create") || CREATE_OTHER.has(type)) return "create";
  if (type.startsWith("Alter") || ALTER_OTHER.has(type)) return "alter";
  return "other";
}

/**
 * One message for the agent (and the audit reason) when a classification must be refused on its
 * own, before any rule is consulted; undefined when the rules decide.
 */
