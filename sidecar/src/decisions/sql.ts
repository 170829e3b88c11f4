// SQL judgement: from a classification to a decision, for one SQL text on one connection. The
// PostgreSQL guard and `airlock policy test --sql` both ask here; the policy engine stays
// protocol-agnostic and answers the queries this layer needs.
import type { CompiledConnection, PolicySet } from "../policy/compile.ts";
import type { Decision, SqlKind, Subject } from "../policy/types.ts";
import { elide } from "../sql/approval-summary.ts";
import type { Catalog } from "../sql/catalog.ts";
import { classificationCalls, withOpaqueCalls, withUncommittedCatalog } from "../sql/catalog-judge.ts";
import { statementSpans } from "../sql/classify.ts";
import { builtinRefusal, type Classification, type ClassifiedStatement } from "../sql/index.ts";
import { refusal } from "./refusals.ts";

/** Statement kinds whose effect cannot be judged from the text. */
const OPAQUE: ReadonlySet<SqlKind> = new Set(["do", "call"]);

export interface SqlJudgement {
  decision: Decision;
  /** The statements judged (EXECUTE resolved to what was prepared). */
  statements: readonly ClassifiedStatement[];
}

export interface JudgeInput {
  classification: Classification;
  policies: PolicySet;
  connection: CompiledConnection;
  subject: Subject;
  /** Statements prepared in this session (SQL PREPARE and protocol Parse), by name. */
  prepared?: { get(name: string): readonly ClassifiedStatement[] | undefined };
  /** Masking applies to this connection's results. */
  masking?: boolean;
  /**
   * Column rules in force: the covered columns (lower-cased), and what the database holds that
   * reads them unseen (its functions, the views over them). A statement that stores values
   * computed from them is refused (copiedCoveredColumn).
   */
  covered?: CoveredData;
  /**
   * The upstream's catalog: functions and operators the statements call — directly, and through
   * the views, defaults, constraints, triggers and domains they touch — that may write make the
   * statement opaque, judged like CALL. Without it, only what the text shows is judged.
   */
  catalog?: Catalog;
  /**
   * The session changed the catalog in a transaction still open, which `catalog` (read on another
   * connection) cannot see: every statement that may run database code is opaque until it ends.
   */
  catalogUncommitted?: boolean;
  /** The SQL text: a denial in a multi-statement text names the statement that was denied. */
  text?: string;
}

export interface CoveredData {
  readonly columns: ReadonlySet<string>;
  readonly userFunctions?: ReadonlySet<string>;
  readonly coveredRelations?: ReadonlySet<string>;
}

const lastName = (n: string) => n.slice(n.lastIndexOf(".") + 1).toLowerCase();

/**
 * The covered column a statement would store values of (INSERT ... SELECT, UPDATE ... SET, CREATE
 * TABLE AS): masking follows a value by the column it is read from, and a stored copy under
 * another name would be read back unmasked. "*" (a whole row) and a database function or a view
 * over covered data in such a statement count as the first covered column.
 */
export function copiedCoveredColumn(s: ClassifiedStatement, covered: CoveredData): string | undefined {
  if (!s.written || covered.columns.size === 0) return undefined;
  const first = covered.columns.values().next().value;
  // A database function or a view over covered data may supply any value the statement stores.
  const wide =
    s.functions.some((f) => covered.userFunctions?.has(lastName(f))) ||
    s.tables.some((t) => covered.coveredRelations?.has(lastName(t)));
  for (const v of s.written) {
    // Stored into a covered column: read back, it is masked as that column.
    if (v.into !== undefined && covered.columns.has(v.into)) continue;
    for (const c of v.from) if (covered.columns.has(c)) return c;
    if (v.from.includes("*") || wide) return first;
  }
  return undefined;
}

/** `decision` with the denied statement of a multi-statement text named (position and excerpt). */
function naming(input: JudgeInput, statements: readonly ClassifiedStatement[], decision: Decision): Decision {
  const indexes = [...new Set(statements.map((s) => s.index))];
  if (decision.action !== "deny" || indexes.length < 2) return decision;
  const name = input.connection.spec.name;
  for (const i of indexes) {
    const own = statements.filter((s) => s.index === i);
    const d = input.policies.evaluate(name, input.subject, { kind: "sql", statements: own });
    if (d.action === "allow") continue;
    const span = input.text === undefined ? undefined : statementSpans(input.text)[i];
    const excerpt =
      span && input.text ? elide(input.text.slice(span.start, span.end).trim(), 120) : undefined;
    const what = `statement ${i + 1} of ${indexes.length}${excerpt ? ` (${JSON.stringify(excerpt)})` : ""}`;
    return { ...decision, reason: `${what}: ${decision.reason}` };
  }
  return decision;
}

export function judgeSql(input: JudgeInput): SqlJudgement {
  const { classification: c, connection, policies, subject } = input;
  const policy = connection.policy;
  const builtin = builtinRefusal(c);
  if (builtin) return { decision: refusal("sqlUnjudgeable", policy, builtin), statements: c.statements };

  // EXECUTE name: judged as what was prepared under that name; an unknown name is refused
  // (the sidecar saw every PREPARE of this session, so it cannot be a legitimate statement).
  let statements: readonly ClassifiedStatement[] = c.statements;
  if (c.statements.some((s) => s.effect?.kind === "execute")) {
    const resolved: ClassifiedStatement[] = [];
    for (const s of c.statements) {
      if (s.effect?.kind !== "execute") {
        resolved.push(s);
        continue;
      }
      const name = s.effect.name;
      const prepared = input.prepared?.get(name);
      if (!prepared)
        return { decision: refusal("sqlExecuteUnprepared", policy, name), statements: c.statements };
      // Parameters of EXECUTE may call functions: keep them with the prepared statement's.
      for (const p of prepared) {
        const { effect: _effect, ...plain } = p;
        resolved.push({ ...plain, functions: [...p.functions, ...s.functions], index: s.index });
      }
    }
    statements = resolved;
  }

  // Code the text does not show: each opaque function becomes a `call` entry of its statement, so
  // only a rule that lists `call` explicitly (and may name the functions) lets it through.
  if (input.catalog) {
    const judged: Classification = statements === c.statements ? c : { ...c, statements };
    const committed = classificationCalls(judged, input.catalog);
    const calls = input.catalogUncommitted ? withUncommittedCatalog(judged, committed) : committed;
    if (calls.opaque) statements = withOpaqueCalls(judged, calls);
  }

  if (input.masking) {
    for (const s of statements) {
      // COPY t (a, b) TO STDOUT in text or CSV is masked row by row (postgres/copy-masking.ts);
      // any other COPY ... TO cannot be.
      const copy = s.copyOut;
      if (s.kind === "copyTo" && !(copy?.columns && copy.plain && copy.format !== "binary"))
        return { decision: refusal("maskingCopyTo", policy), statements };
      if (s.effect?.kind === "declareCursor" && s.effect.binary)
        return { decision: refusal("maskingBinaryCursor", policy), statements };
    }
  }
  if (input.covered)
    for (const s of statements) {
      const column = copiedCoveredColumn(s, input.covered);
      if (column !== undefined) return { decision: refusal("maskingStoredCopy", policy, column), statements };
    }

  const name = connection.spec.name;
  const decision = policies.evaluate(name, subject, { kind: "sql", statements });
  // Custom settings (`app.tenant`) are what row-level security policies and functions read as
  // "who is this": only a rule that lists them (match.sql.settings) lets an agent change one.
  const custom = statements.flatMap((s) => s.customSettings ?? []);
  if (custom.length && decision.action === "deny" && decision.rule === undefined)
    return { decision: refusal("sqlCustomSetting", policy, [...new Set(custom)].join(", ")), statements };
  if (decision.action === "deny" && decision.rule === undefined) {
    const opaque = statements.filter((s) => s.nested === "opaque").flatMap((s) => s.functions);
    if (opaque.length)
      return {
        decision: {
          ...decision,
          reason: `no rule allows calling ${[...new Set(opaque)].join(", ")}, which may write or run code the statement does not show (volatile, or not in the catalog); an allow rule must list "call" explicitly`,
        },
        statements,
      };
  }
  if (decision.action !== "allow") return { decision: naming(input, statements, decision), statements };

  // DO and CALL run code the guard cannot see: only an allow rule that names the kind lets them
  // through (`*`, `write`, or a rule without statement kinds is not enough).
  for (const s of statements) {
    if (!OPAQUE.has(s.kind)) continue;
    const d = policies.evaluate(name, subject, { kind: "sql", statements: [s] });
    if (d.action !== "allow" || d.rule === undefined || !policies.ruleNamesSqlKind(name, d.rule, s.kind)) {
      const what =
        s.nested === "opaque"
          ? `${s.functions.join(", ")} may write or run code the statement does not show (volatile, or not in the catalog)`
          : `${s.kind === "do" ? "DO blocks" : "CALL"} run code the guard cannot inspect`;
      return {
        decision: {
          action: "deny",
          policy,
          ...(d.rule ? { rule: d.rule } : {}),
          reason: `${what}; an allow rule must list "${s.kind}" explicitly`,
        },
        statements,
      };
    }
  }
  return { decision, statements };
}

/** Statement kinds that cannot write under `default_transaction_read_only = on`. */
const READ_SAFE: ReadonlySet<string> = new Set([
  "read",
  "select",
  "show",
  "explain",
  "copyTo",
  "transaction",
  "set",
  "housekeeping",
]);

/**
 * Whether the upstream session should run with `default_transaction_read_only = on`: when every
 * allow and requireApproval rule that could apply to this subject on this connection names
 * statement kinds, and all of them are reads (select, show, explain, copyTo, or the `read`
 * shorthand) or harmless session statements (transaction, set — guarded settings are refused
 * anyway). A rule without `match.sql.statements`, or with `*`, could allow a write, so it keeps
 * the session read-write. Deny rules do not matter. Decided once per session, at connect time.
 */
export function readOnlySession(
  policies: PolicySet,
  connection: CompiledConnection,
  subject: Subject,
): boolean {
  const kinds = policies.admittedSqlKinds(connection.spec.name, subject);
  if (kinds === "any") return false;
  for (const k of kinds) if (!READ_SAFE.has(k)) return false;
  return true;
}
