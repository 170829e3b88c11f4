// The seam to just-in-time approvals: the canonical, protocol-agnostic gate lives in
// sidecar/src/approvals/gate.ts. A statement whose decision is requireApproval waits on the gate
// (protocol "postgres"); without one it is denied with a clear message.
import { normalizeSync } from "libpg-query";

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
