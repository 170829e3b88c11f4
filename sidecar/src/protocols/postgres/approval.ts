// The seam to just-in-time approvals: the canonical, protocol-agnostic gate lives in
// sidecar/src/approvals/gate.ts. A statement whose decision is requireApproval waits on the gate
// (protocol "postgres"); without one it is denied with a clear message.
import { normalizeSync } from "libpg-query";
import type { ApprovalAsk } from "../../operations/approval-step.ts";
import type { Subject } from "../../policy/types.ts";
import type { ClassifiedStatement } from "../../sql/index.ts";

export type { ApprovalGate, ApprovalInput, ApprovalOutcome, ApprovalStatus } from "../../approvals/gate.ts";

/** The statement as approvers see it: libpg-query's normalization (literals become $n). */
export function approvalSummary(text: string): string | undefined {
  try {
    return normalizeSync(text).trim().slice(0, 4096);
  } catch {
    return undefined;
  }
}

const LEADING_COMMENT = /^\s*(?:--[ \t]*([^\r\n]*)|\/\*\s*([\s\S]*?)\s*\*\/)/;

/** The agent's stated reason: a comment at the start of the statement (`-- why` or `/* why *\/`). */
export function approvalReason(text: string): string | undefined {
  const m = LEADING_COMMENT.exec(text);
  const reason = (m?.[1] ?? m?.[2] ?? "").trim();
  return reason ? reason.slice(0, 512) : undefined;
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
