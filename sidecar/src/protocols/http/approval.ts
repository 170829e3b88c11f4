// The seam to just-in-time approvals. The HTTP guard asks an ApprovalGate when a rule says
// requireApproval; the canonical, protocol-agnostic types live in sidecar/src/approvals/gate.ts
// (the PostgreSQL and SSH guards use the same gate). Without a gate the guard fails closed with
// `approval_unavailable`.
import type { IncomingHttpHeaders } from "node:http";

export type { ApprovalGate, ApprovalInput, ApprovalOutcome, ApprovalStatus } from "../../approvals/gate.ts";

/** Header an agent states its reason in; passed to the gate as `reason` (and not forwarded). */
export const REASON_HEADER = "x-airlock-reason";

/** The agent's stated reason from `X-Airlock-Reason`, if any (the gate masks and bounds it). */
export function approvalReason(headers: IncomingHttpHeaders): string | undefined {
  const v = headers[REASON_HEADER];
  const text = (Array.isArray(v) ? v.join(" ") : v)?.trim();
  return text ? text : undefined;
}
