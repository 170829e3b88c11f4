// SQL judgement: from a classification to a decision, for one SQL text on one connection. The
// PostgreSQL guard and `airlock policy test --sql` both ask here; the policy engine stays
// protocol-agnostic and answers the queries this layer needs.
import type { CompiledConnection, PolicySet } from "../policy/compile.ts";
import type { Decision, SqlKind, Subject } from "../policy/types.ts";
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

  if (input.masking) {
    for (const s of statements) {
      if (s.kind === "copyTo") return { decision: refusal("maskingCopyTo", policy), statements };
      if (s.effect?.kind === "declareCursor" && s.effect.binary)
        return { decision: refusal("maskingBinaryCursor", policy), statements };
    }
  }

  const name = connection.spec.name;
  const decision = policies.evaluate(name, subject, { kind: "sql", statements });
  if (decision.action !== "allow") return { decision, statements };

  // DO and CALL run code the guard cannot see: only an allow rule that names the kind lets them
  // through (`*`, `write`, or a rule without statement kinds is not enough).
  for (const s of statements) {
    if (!OPAQUE.has(s.kind)) continue;
    const d = policies.evaluate(name, subject, { kind: "sql", statements: [s] });
    if (d.action !== "allow" || d.rule === undefined || !policies.ruleNamesSqlKind(name, d.rule, s.kind)) {
      return {
        decision: {
          action: "deny",
          policy,
          ...(d.rule ? { rule: d.rule } : {}),
          reason: `${s.kind === "do" ? "DO blocks" : "CALL"} run code the guard cannot inspect; an allow rule must list "${s.kind}" explicitly`,
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
