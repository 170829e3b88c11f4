// The seam to just-in-time approvals. The HTTP guard asks an ApprovalGate when a rule says
// requireApproval; the approvals work (AccessRequest objects, grants) implements it later. Without
// a gate the guard fails closed with `approval_unavailable`.
import type { AuditOperation } from "../../audit/events.ts";
import type { Decision, Subject } from "../../policy/types.ts";

export interface ApprovalInput {
  connection: string;
  protocol: "http";
  /** The requireApproval decision, naming policy and rule and carrying `approval` settings. */
  decision: Decision;
  subject: Subject;
  /** What would be approved: method and normalized path, never bodies or query strings. */
  operation: AuditOperation;
  session: string;
  /** Aborted when the agent goes away while the request waits. */
  signal: AbortSignal;
}

export interface ApprovalOutcome {
  approved: boolean;
  /** Name of the AccessRequest that tracks this approval. */
  request: string;
  /** When not approved: still pending (async mode or timed out), denied, or expired. */
  status?: "pending" | "denied" | "expired";
  approvers?: readonly string[];
  /** The operation passed on an earlier approval's grant rather than a fresh one. */
  grant?: boolean;
  /** A safe, human-readable note for the agent (e.g. who to ask). */
  message?: string;
}

export interface ApprovalGate {
  /** Resolves when the request is decided (or, in async mode, at once with `approved: false`). */
  request(input: ApprovalInput): Promise<ApprovalOutcome>;
}
