// The audit event: one per operation, a stable schema (version `v`) that log pipelines and the
// replay tool rely on. Values here are already safe: operation summaries carry no literals or
// secrets, and masking findings carry detector names and paths, never the values.
import type { Decision, Operation } from "../policy/types.ts";

export const AUDIT_SCHEMA_VERSION = 1;

export interface AuditIdentity {
  serviceAccount: string;
  pod?: string;
  namespace?: string;
  user?: string;
  groups?: readonly string[];
}

export interface AuditEvent {
  /** Session the operation belongs to (one per agent connection). */
  session: string;
  connection: string;
  protocol: "http" | "postgres" | "ssh" | "tcp";
  identity: AuditIdentity;
  operation: AuditOperation;
  decision: Pick<Decision, "action" | "policy" | "rule" | "reason">;
  /** Set when an approval (or a grant it opened) let the operation through. */
  approval?: { request: string; approvers: readonly string[]; grant?: boolean };
  /** Masked values by detector (or "field"/"column" for path rules). */
  masked?: Record<string, number>;
  upstream?: { status?: number | string; error?: string };
  /** Rows returned or affected (SQL). */
  rows?: number;
  /** The leased upstream credential the operation ran under: Vault's lease ID, never the secret. */
  credential?: { source: "secretRef" | "vault"; lease?: string };
  durationMs: number;
}

/** What an audit event says about an operation: shapes, not contents. */
export type AuditOperation =
  | Exclude<Operation, { kind: "sql" } | { kind: "http-tunnel" }>
  /** An opaque tunnel; a relayed one (passthrough) is audited when it ends, with what it carried. */
  | {
      kind: "http-tunnel";
      /** The server name of the agent's ClientHello. */
      sni?: string;
      /** Bytes relayed each way (TLS records, never their content). */
      bytes?: { fromAgent: number; fromUpstream: number };
    }
  | { kind: "sql"; statements: readonly { kind: string; tables: readonly string[]; fingerprint?: string }[] }
  | { kind: "tcp"; destination: string };
