// The approval gate: the one seam every protocol guard (HTTP, PostgreSQL, SSH) calls when a rule
// says requireApproval. It is protocol-agnostic: a guard hands over what the policy decided, who
// asks, and a masked description of the operation; the gate answers approved or not.
// Implementations: createApprovalService (service.ts) over a Kubernetes or a local store.
import { parseDuration } from "../../../api/src/duration.ts";
import type { AuditOperation } from "../audit/events.ts";
import type { Decision, Subject } from "../policy/types.ts";

export type ApprovalProtocol = "http" | "postgres" | "ssh" | "mcp";

export interface ApprovalInput {
  /** Policy connection the operation targets. */
  connection: string;
  protocol: ApprovalProtocol;
  /** The requireApproval decision: names policy and rule and carries the rule's `approval` settings. */
  decision: Decision;
  /** Who asks: the pod's service account, plus the verified end user when there is one. */
  subject: Subject;
  /** The operation as audited (shapes, never values). Used for the summary when none is given. */
  operation: AuditOperation;
  /**
   * What would be approved, already masked by the guard: for SQL the normalized statement with
   * literals replaced by $n, for HTTP "METHOD /path". Absent: derived from `operation`. The gate
   * runs the secret/PII detectors over it again before it leaves the sidecar.
   */
  summary?: string;
  /** Stable hash of the operation's shape; absent: a hash of protocol and summary. */
  fingerprint?: string;
  /** The agent's stated reason (X-Airlock-Reason, application_name, a SQL comment), if any. */
  reason?: string;
  /** Session (agent connection) the operation belongs to. */
  session: string;
  /**
   * Aborted when the agent goes away (or cancels) while the operation waits; a cancel aborts with
   * an ApprovalWaitCanceled reason, so the answer can say so.
   */
  signal: AbortSignal;
  /** Called once when the operation starts waiting on a pending request: the guard tells the agent. */
  onWaiting?(waiting: ApprovalWaiting): void;
}

/** What an agent is told when its operation starts waiting for a human. */
export interface ApprovalWaiting {
  request: string;
  /** The command an approver runs (e.g. `kubectl airlock approve NAME -n NS`). */
  approveHint: string;
  /** When the request expires (ISO 8601): the wait ends then at the latest. */
  expiresAt: string;
}

/** The abort reason of a wait the client itself cancelled (PostgreSQL CancelRequest, Ctrl-C). */
export class ApprovalWaitCanceled extends Error {
  /**
   * Who ended the wait: the client's cancel, the session's statement_timeout (PostgreSQL), or the
   * connection's approval wait limit (MCP: mcp.approvalWaitSeconds).
   */
  readonly by: "client" | "statement_timeout" | "wait_limit";
  constructor(by: "client" | "statement_timeout" | "wait_limit" = "client") {
    super(
      by === "client"
        ? "canceled by the client"
        : by === "statement_timeout"
          ? "ended by statement_timeout"
          : "ended by the approval wait limit",
    );
    this.name = "ApprovalWaitCanceled";
    this.by = by;
  }
}

/** One line for the agent: the operation waits, for whom, until when. */
export function waitingText(w: ApprovalWaiting): string {
  return `waiting for approval: ${w.approveHint} (access request ${w.request}, expires ${w.expiresAt}); cancel to stop waiting`;
}

/**
 * Why an operation was not approved: still `pending` (async mode, or the agent went away),
 * `denied`, `expired` (nobody decided in time), or `unavailable` (the approval service could not be
 * reached or is not trustworthy: fail closed).
 */
export type ApprovalStatus = "pending" | "denied" | "expired" | "unavailable";

export interface ApprovalOutcome {
  approved: boolean;
  /** Name of the AccessRequest that tracks (or tracked) this approval. */
  request: string;
  /** Set when not approved. */
  status?: ApprovalStatus;
  /** Users whose approvals count (when approved: who let it through). */
  approvers?: readonly string[];
  /** The operation passed on an earlier approval's grant rather than a fresh approval. */
  grant?: boolean;
  /** A safe, human-readable note for the agent: what happened and what to do next. */
  message?: string;
}

export interface ApprovalGate {
  /** Resolves when the request is decided (or, in async mode, at once with status pending). */
  request(input: ApprovalInput): Promise<ApprovalOutcome>;
}

/** Placeholder request name when no AccessRequest could be created. */
export const NO_REQUEST = "(none)";

export type ApprovalMode = "wait" | "async";

/** A rule's `approval` block with the CRD defaults applied and durations in milliseconds. */
export interface ApprovalSettings {
  approvers: { groups: string[]; users: string[] };
  minApprovals: number;
  /** Duration text as the rule wrote it (copied into the AccessRequest), if any. */
  grantTtl?: string;
  grantTtlMs?: number;
  timeoutMs: number;
  mode: ApprovalMode;
}

export const DEFAULT_APPROVAL_TIMEOUT = "5m";

export function approvalSettings(decision: Decision): ApprovalSettings {
  const a = decision.approval;
  if (!a)
    throw new Error(`rule ${decision.rule ?? "(unnamed)"} needs approval settings (approval.approvers)`);
  const groups = [...(a.approvers?.groups ?? [])];
  const users = [...(a.approvers?.users ?? [])];
  if (groups.length === 0 && users.length === 0)
    throw new Error(`rule ${decision.rule ?? "(unnamed)"} names no approvers`);
  const settings: ApprovalSettings = {
    approvers: { groups, users },
    minApprovals: Math.min(5, Math.max(1, Math.trunc(a.minApprovals ?? 1))),
    timeoutMs: parseDuration(a.timeout ?? DEFAULT_APPROVAL_TIMEOUT),
    mode: a.mode === "async" ? "async" : "wait",
  };
  if (a.grantTtl) {
    settings.grantTtl = a.grantTtl;
    settings.grantTtlMs = parseDuration(a.grantTtl);
  }
  return settings;
}

/** A one-line description of an operation, from its audit shape (values are never in it). */
export function summarizeOperation(op: AuditOperation): string {
  switch (op.kind) {
    case "http":
      return `${op.method} ${op.path}${op.websocket ? " (websocket)" : ""}`;
    case "http-tunnel":
      return "CONNECT (tunnel)";
    case "mcp": {
      const target = op.tool ?? op.resource ?? op.prompt;
      return target === undefined ? op.method : `${op.method} ${target}`;
    }
    case "sql":
      return (
        op.statements
          .map((s) => `${s.kind.toUpperCase()}${s.tables.length ? ` ${s.tables.join(", ")}` : ""}`)
          .join("; ") || "(empty statement)"
      );
    case "ssh-exec":
      return op.command;
    case "ssh-shell":
      return "interactive shell";
    case "ssh-forward":
      return `port forward to ${op.target}`;
    case "ssh-sftp":
      return "sftp";
    case "tcp":
      return `connect ${op.destination}`;
  }
}

/** Statement fingerprints when the operation carries them (SQL), for a stable operation hash. */
export function operationFingerprintParts(op: AuditOperation): string[] | undefined {
  if (op.kind !== "sql") return undefined;
  const parts = op.statements.map((s) => s.fingerprint);
  return parts.every((p): p is string => typeof p === "string") ? parts : undefined;
}
