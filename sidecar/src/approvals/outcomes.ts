// What the agent is told: every ApprovalOutcome the approval service answers, with its wording in
// one place (guards pass `message` on verbatim, and tests match it).
import type { AccessRequest } from "../../../api/src/index.ts";
import { type ApprovalMode, type ApprovalOutcome, NO_REQUEST } from "./gate.ts";
import { assess } from "./request.ts";
import { durationText, who } from "./request-spec.ts";

/** How a tracked request ended. `unavailable`: it can no longer be trusted to answer (fail closed). */
export type Final =
  | { outcome: "approved"; approvers: string[] }
  | { outcome: "denied"; approvers: string[]; deniedBy: string; reason?: string }
  | { outcome: "expired"; approvers: string[] }
  | { outcome: "unavailable"; approvers: string[]; message: string };

/** The Final that the request's approvals and denials (as `assess` counts them) amount to, if any. */
export function fromAssessment(obj: Pick<AccessRequest, "spec" | "status">): Final | undefined {
  const a = assess(obj);
  switch (a.outcome) {
    case "pending":
      return undefined;
    case "denied":
      return {
        outcome: "denied",
        approvers: a.approvers,
        deniedBy: a.deniedBy,
        ...(a.reason ? { reason: a.reason } : {}),
      };
    default:
      return { outcome: a.outcome, approvers: a.approvers };
  }
}

/** A request as the outcome wording needs it. */
export interface Decidable {
  readonly name: string;
  readonly obj: AccessRequest;
  readonly final?: Final | undefined;
}

/** The answer for a tracked request: pending until it has a Final. */
export function trackedOutcome(t: Decidable, hint: (name: string) => string): ApprovalOutcome {
  const f = t.final;
  if (!f) {
    const a = assess(t.obj);
    return {
      approved: false,
      request: t.name,
      status: "pending",
      approvers: a.approvers,
      message:
        `approval required: access request ${t.name} is pending (${a.approvers.length}/${t.obj.spec.minApprovals}; ` +
        `needs ${who(t.obj.spec)}); ask an approver to run \`${hint(t.name)}\`, then retry`,
    };
  }
  switch (f.outcome) {
    case "approved":
      return { approved: true, request: t.name, approvers: f.approvers, grant: false };
    case "denied":
      return {
        approved: false,
        request: t.name,
        status: "denied",
        approvers: f.approvers,
        message: `access request ${t.name} was denied by ${f.deniedBy}${f.reason ? `: ${f.reason}` : ""}`,
      };
    case "expired":
      return {
        approved: false,
        request: t.name,
        status: "expired",
        approvers: f.approvers,
        message: `access request ${t.name} expired without enough approvals (${who(t.obj.spec)}); retry to ask again`,
      };
    case "unavailable":
      return { approved: false, request: t.name, status: "unavailable", message: f.message };
  }
}

/** The agent stopped waiting (went away, or canceled); the request lives on for a retry to find. */
export function agentGone(t: Decidable, hint: (name: string) => string, canceled = false): ApprovalOutcome {
  return {
    ...trackedOutcome(t, hint),
    message: `${canceled ? "the client canceled the wait" : "the agent went away"}; access request ${t.name} stays pending and a retry of the same operation picks it up`,
  };
}

/** Fail closed without an answer from approvers. */
export function unavailable(message: string, request: string = NO_REQUEST): ApprovalOutcome {
  return { approved: false, request, status: "unavailable", message };
}

export const SHUTTING_DOWN = "the sidecar is shutting down";

/** The store refused the request for good (forbidden, invalid). */
export function creationRefused(detail: string): ApprovalOutcome {
  return unavailable(`approval service refused the access request: ${detail}`);
}

/** No request could be created: in wait mode after trying until the timeout, in async mode at once. */
export function creationFailed(mode: ApprovalMode, timeoutMs: number, detail: string): ApprovalOutcome {
  return unavailable(
    mode === "wait"
      ? `approval service unreachable: no access request could be created within ${durationText(timeoutMs)} (${detail}); the operation was not performed`
      : `approval service unreachable: no access request could be created (${detail}); retry later`,
  );
}

/** Final message of a request whose fate the store could not confirm by its expiry. */
export function unreachableMessage(name: string, detail: string): string {
  return `approval service unreachable: access request ${name} ${detail}; the operation was not performed`;
}

/** An operation let through by an open grant of an earlier approval. */
export function grantOutcome(grant: { request: string; approvers: readonly string[] }): ApprovalOutcome {
  return { approved: true, request: grant.request, approvers: grant.approvers, grant: true };
}
