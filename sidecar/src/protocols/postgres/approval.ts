// The seam to just-in-time approvals: the canonical, protocol-agnostic gate lives in
// sidecar/src/approvals/gate.ts. A statement whose decision is requireApproval waits on the gate
// (protocol "postgres"); without one it is denied with a clear message.
import { waitingText } from "../../approvals/gate.ts";
import type { SqlJudgement } from "../../decisions/index.ts";
import {
  type ApprovalAsk,
  type ApprovalResult,
  type ApprovalStepDeps,
  seekApproval,
} from "../../operations/approval-step.ts";
import type { Decision, Subject } from "../../policy/types.ts";
import { approvalSummary as summarize, visibleText } from "../../sql/approval-summary.ts";
import type { ClassifiedStatement } from "../../sql/index.ts";
import { classifySync } from "../../sql/index.ts";
import { normalizeSync } from "../../sql/libpg-query.ts";
import { noticeMessage } from "./protocol.ts";
import type { Op } from "./statements.ts";

export type { ApprovalGate, ApprovalInput, ApprovalOutcome, ApprovalStatus } from "../../approvals/gate.ts";

/**
 * The statement as approvers see it: libpg-query's normalization (literals become $n). A text of
 * several statements, or one too long to show whole, starts with every statement that is not a
 * plain read — kinds, tables, functions, fingerprint, its own excerpt — so that a write cannot
 * hide behind a long comment or harmless statements; then the text with head and tail kept and
 * the elision marked with what it hides.
 */
export function approvalSummary(text: string): string | undefined {
  const s = summaryOf(text);
  return s === undefined ? undefined : visibleText(s);
}

function summaryOf(text: string): string | undefined {
  let normalized: string;
  try {
    normalized = normalizeSync(text).trim();
  } catch {
    return undefined;
  }
  const classification = classifySync(normalized);
  if (classification.errors.length) return normalized.slice(0, SUMMARY_MAX);
  const indexes = new Set(classification.statements.map((st) => st.index));
  if (indexes.size <= 1 && normalized.length <= SUMMARY_MAX) return normalized;
  const s = summarize(normalized, classification, { maxChars: SUMMARY_MAX / 2, maxExcerpt: 240 });
  const lines = s.statements.map(
    (st) =>
      `${st.position}. ${st.kinds.join("+").toUpperCase()}${st.tables.length ? ` ${st.tables.join(", ")}` : ""}` +
      `${st.functions.length ? ` calls ${st.functions.join(", ")}` : ""} [${st.fingerprint}]: ${st.excerpt}`,
  );
  const writes = s.statements.filter((st) => st.kinds.some((k) => !READ_KINDS.has(k))).length;
  return [
    `${indexes.size} statements (${writes} not plain reads${s.omittedReads ? `, ${s.omittedReads} reads not listed` : ""}):`,
    ...lines,
    "text:",
    s.text,
  ].join("\n");
}

const SUMMARY_MAX = 4096;
const READ_KINDS = new Set(["select", "show", "explain", "copyTo"]);

const LEADING_COMMENT = /^\s*(?:--[ \t]*([^\r\n]*)|\/\*\s*([\s\S]*?)\s*\*\/)/;

/** The agent's stated reason: a comment at the start of the statement (`-- why` or `/* why *\/`). */
export function approvalReason(text: string): string | undefined {
  const m = LEADING_COMMENT.exec(text);
  const reason = (m?.[1] ?? m?.[2] ?? "").trim();
  return reason ? visibleText(reason.slice(0, 512)) : undefined;
}

/** What the approval step is asked for one SQL text (`text`: undefined when it is not known). */
export function sqlApprovalAsk(
  statements: readonly ClassifiedStatement[],
  text: string | undefined,
  scope: { connection: string; subject: Subject; session: string },
): ApprovalAsk {
  const summary = text === undefined ? undefined : approvalSummary(text);
  const reason = text === undefined ? undefined : approvalReason(text);
  return {
    connection: scope.connection,
    protocol: "postgres",
    subject: scope.subject,
    operation: {
      kind: "sql",
      statements: statements.map((s) => ({ kind: s.kind, tables: s.tables, fingerprint: s.fingerprint })),
    },
    ...(summary ? { summary } : {}),
    fingerprint: statements.map((s) => s.fingerprint).join(","),
    ...(reason ? { reason } : {}),
    session: scope.session,
  };
}

/** What a judged text came to, once any approval was asked: may it run, and under what record. */
export interface Verdict {
  judgement: SqlJudgement;
  /** The effective decision: `allow` (possibly after an approval), or why not. */
  decision: Decision;
  /** What the audit event records as the decision (the rule's requireApproval when one was asked). */
  audited: Decision;
  approval?: NonNullable<Op["rec"]["approval"]>;
  /** The approval's refusal, when one was asked and did not let it through. */
  refused?: Extract<ApprovalResult, { approved: false }>;
}

/**
 * Asks the approval step for a requireApproval judgement; the agent is told (`tell`, a
 * NoticeResponse) as soon as the statement waits.
 */
export async function askApproval(
  deps: ApprovalStepDeps & { tell(notice: Buffer): void },
  j: Pick<SqlJudgement, "decision" | "statements">,
  ask: ApprovalAsk,
  signal: AbortSignal,
): Promise<Verdict> {
  const d = j.decision;
  const result = await seekApproval(
    deps,
    d,
    { ...ask, onWaiting: (w) => deps.tell(noticeMessage(waitingText(w))) },
    signal,
  );
  const judgement = { decision: d, statements: j.statements };
  if (result.approved)
    return { judgement, decision: { ...d, action: "allow" }, audited: d, approval: result.approval };
  return {
    judgement,
    decision: { ...d, action: "deny", reason: result.message },
    audited: d,
    refused: result,
  };
}
