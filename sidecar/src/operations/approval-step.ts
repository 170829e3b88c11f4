// The approval step of the operation lifecycle, shared by every guard: a requireApproval decision
// goes to the approval gate, and the outcome comes back as one of a closed set of results with
// one wording. The guard only renders it in its protocol (HTTP JSON, a PostgreSQL ErrorResponse,
// an SSH stderr line). The audit shape follows the schema: the decision stays the rule's
// requireApproval; `approval` says who let the operation through; when it did not go through,
// `upstream.error` says why (`approval_denied`, `approval_pending`, `approval_expired`,
// `approval_unavailable`).
import {
  type ApprovalGate,
  type ApprovalInput,
  type ApprovalStatus,
  ApprovalWaitCanceled,
} from "../approvals/gate.ts";
import type { Decision } from "../policy/types.ts";
import type { AuditApproval, Operation } from "./lifecycle.ts";

export const NO_APPROVAL_SERVICE = "approval required but no approval service is configured";

/** The gate's status, `unconfigured` (no gate at all) or `failed` (the gate threw). */
export type ApprovalRefusal = ApprovalStatus | "unconfigured" | "failed";

export type ApprovalResult =
  | { approved: true; approval: AuditApproval }
  | {
      approved: false;
      /** Why it did not go through. */
      status: ApprovalRefusal;
      /** The AccessRequest that tracks it, when one exists. */
      request?: string;
      /** What the agent is told (and the audit reason appends): one wording for every protocol. */
      message: string;
      /** What the agent can do next, when there is something. */
      hint?: string;
      /** The client itself cancelled the wait (the request may stay pending). */
      canceled?: boolean;
      /** The wait was ended by the session's statement_timeout (PostgreSQL). */
      timedOut?: boolean;
    };

/** Everything of ApprovalInput but the decision and the abort signal, which the step supplies. */
export type ApprovalAsk = Omit<ApprovalInput, "decision" | "signal">;

export interface ApprovalStepDeps {
  gate: ApprovalGate | undefined;
  /** Where a failing gate is reported (the error text never reaches the agent). */
  warn(message: string, err: unknown): void;
}

function refusalMessage(rule: string, status: ApprovalStatus, request: string, note?: string): string {
  return `approval ${status} for rule ${rule} (request ${request})${note ? `: ${note}` : ""}`;
}

/**
 * Asks for approval of one operation. Never throws: a failing gate is `unavailable` (fail closed).
 * `signal` aborts the wait (the agent went away or cancelled).
 */
export async function seekApproval(
  deps: ApprovalStepDeps,
  decision: Decision,
  ask: ApprovalAsk,
  signal: AbortSignal,
): Promise<ApprovalResult> {
  const rule = decision.rule ?? "(unnamed)";
  if (!deps.gate)
    return {
      approved: false,
      status: "unconfigured",
      message: `rule ${rule}: ${NO_APPROVAL_SERVICE}`,
      hint: "ask an operator to configure Airlock approvals",
    };
  try {
    const outcome = await deps.gate.request({ ...ask, decision, signal });
    if (outcome.approved)
      return {
        approved: true,
        approval: {
          request: outcome.request,
          approvers: outcome.approvers ?? [],
          ...(outcome.grant ? { grant: true } : {}),
        },
      };
    const status = outcome.status ?? "pending";
    const note = outcome.message ?? (status === "pending" ? "retry once it is approved" : undefined);
    const canceled = signal.aborted && signal.reason instanceof ApprovalWaitCanceled;
    const timedOut = canceled && signal.reason.by === "statement_timeout";
    const who = timedOut
      ? "the session's statement_timeout ended"
      : canceled && signal.reason.by === "wait_limit"
        ? "the connection's approval wait limit ended"
        : "the client canceled";
    return {
      approved: false,
      status,
      request: outcome.request,
      message: canceled
        ? `${who} the wait for approval of rule ${rule} (request ${outcome.request}, which stays pending: a retry of the same operation picks it up)`
        : refusalMessage(rule, status, outcome.request, note),
      ...(canceled ? { canceled: true } : {}),
      ...(timedOut ? { timedOut: true } : {}),
    };
  } catch (err) {
    deps.warn("approval service failed", err);
    return {
      approved: false,
      status: "failed",
      message: `rule ${rule}: the approval service failed; the operation was not approved`,
    };
  }
}

/** Upstream error code the audit event carries for an operation an approval did not let through. */
export function approvalErrorCode(status: ApprovalRefusal): string {
  return status === "unconfigured" || status === "failed" ? "approval_unavailable" : `approval_${status}`;
}

/**
 * Records an approval result on the operation: the approval that let it through, or the refusal
 * (reason extended with the one wording, upstream error set). Returns whether it may proceed.
 */
export function recordApproval(op: Operation, decision: Decision, result: ApprovalResult): boolean {
  if (result.approved) {
    op.decide(decision).approved(result.approval);
    return true;
  }
  op.decide({ ...decision, reason: `${decision.reason}; ${result.message}` });
  op.upstream = { error: approvalErrorCode(result.status) };
  return false;
}
