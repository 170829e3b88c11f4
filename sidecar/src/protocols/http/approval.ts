// The seam to just-in-time approvals. The HTTP guard asks an ApprovalGate when a rule says
// requireApproval; the canonical, protocol-agnostic types live in sidecar/src/approvals/gate.ts
// (the PostgreSQL and SSH guards use the same gate). Without a gate the guard fails closed with
// `approval_unavailable`. askApproval is the one way a request on the HTTP listeners (plain HTTP
// and MCP) asks: the shared approval step, aborted when the agent's connection closes.
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import type { ApprovalGate, ApprovalProtocol, ApprovalWaiting } from "../../approvals/gate.ts";
import { type ApprovalResult, seekApproval } from "../../operations/approval-step.ts";
import type { Decision, Subject } from "../../policy/types.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import type { Exchange } from "./exchange.ts";

export type { ApprovalGate, ApprovalInput, ApprovalOutcome, ApprovalStatus } from "../../approvals/gate.ts";

/** Header an agent states its reason in; passed to the gate as `reason` (and not forwarded). */
export const REASON_HEADER = "x-airlock-reason";

/** The agent's stated reason from `X-Airlock-Reason`, if any (the gate masks and bounds it). */
export function approvalReason(headers: IncomingHttpHeaders): string | undefined {
  const v = headers[REASON_HEADER];
  const text = (Array.isArray(v) ? v.join(" ") : v)?.trim();
  return text ? text : undefined;
}

export interface AskOptions {
  protocol: ApprovalProtocol;
  /** What the approver sees, already masked by the guard; absent: derived from the operation. */
  summary?: string;
  /** Aborts the wait besides the agent's connection closing (an MCP notifications/cancelled). */
  signal?: AbortSignal;
  onWaiting?(w: ApprovalWaiting): void;
}

/** Asks the approval gate about one request; the wait ends when the agent's connection closes. */
export async function askApproval(
  deps: { ctx: SidecarContext; approvals: ApprovalGate | undefined },
  req: IncomingMessage,
  session: string,
  ex: Exchange,
  decision: Decision,
  subject: Subject,
  opts: AskOptions,
): Promise<ApprovalResult> {
  const { ctx, approvals } = deps;
  const abort = new AbortController();
  const onClose = () => abort.abort();
  const onCancel = () => abort.abort(opts.signal?.reason);
  req.socket.once("close", onClose);
  opts.signal?.addEventListener("abort", onCancel, { once: true });
  if (opts.signal?.aborted) onCancel();
  try {
    const reason = approvalReason(req.headers);
    return await seekApproval(
      {
        gate: approvals,
        warn: (message, err) =>
          ctx.logger.warn(
            { connection: ex.connection, err: err instanceof Error ? err.message : String(err) },
            message,
          ),
      },
      decision,
      {
        connection: ex.connection,
        protocol: opts.protocol,
        subject,
        operation: ex.operation,
        session,
        ...(opts.summary !== undefined ? { summary: opts.summary } : {}),
        ...(reason !== undefined ? { reason } : {}),
        ...(opts.onWaiting ? { onWaiting: opts.onWaiting } : {}),
      },
      abort.signal,
    );
  } finally {
    req.socket.off("close", onClose);
    opts.signal?.removeEventListener("abort", onCancel);
  }
}
