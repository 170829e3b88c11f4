// The vocabulary between protocol handlers and the policy engine. Handlers turn bytes into an
// Operation; the engine answers with a Decision. The engine knows nothing about sockets.
import type { Action, Connection, Rule, SqlStatementKind } from "../../../api/src/index.ts";

/** Who is asking: the pod's service account, and the end user when a verified token came along. */
export interface Subject {
  /** `system:serviceaccount:<namespace>:<name>` */
  serviceAccount: string;
  user?: string;
  groups: readonly string[];
}

/** A concrete statement kind (never the `read`/`write`/`*` shorthands). */
export type SqlKind = Exclude<SqlStatementKind, "read" | "write" | "*">;

export interface SqlStatement {
  kind: SqlKind;
  /** Tables touched, schema-qualified when the statement qualified them. */
  tables: readonly string[];
  functions: readonly string[];
  /** Custom (`x.y`) settings the statement changes (SET, set_config, ...). */
  customSettings?: readonly string[];
}

export type Operation =
  | { kind: "http"; method: string /** normalized, see http-path.ts */; path: string; websocket: boolean }
  /** An opaque CONNECT tunnel: only host-level policy applies. */
  | { kind: "http-tunnel" }
  | { kind: "sql"; statements: readonly SqlStatement[] }
  | { kind: "ssh-exec"; command: string }
  | { kind: "ssh-shell" }
  | { kind: "ssh-forward"; target: string }
  | { kind: "ssh-sftp" }
  /** One MCP JSON-RPC request; tool/resource/prompt are set for tools/call, resources/read, prompts/get. */
  | {
      kind: "mcp";
      method: string;
      tool?: string;
      resource?: string;
      prompt?: string;
      /** A keyed digest of the request's Mcp-Session-Id (the id itself works as a credential). */
      session?: string;
      /** Set on a request the server sends to the agent (sampling, elicitation, roots). */
      origin?: "server";
    };

/**
 * What rules see of a tools/call beyond its operation (match.mcp.when): its arguments, which are
 * never audited, or, for list filtering where no arguments exist, "any-arguments" (conditional
 * allow rules match, conditional deny/requireApproval rules do not: may the tool be used at all?)
 * or "some-arguments" (every conditional rule matches: the strictest some call may meet).
 * `failures` collects the rules whose condition could not be evaluated.
 */
export type ToolCallInput =
  | { arguments: unknown; failures?: { rule: string; error: string }[] }
  | "any-arguments"
  | "some-arguments";

export interface Decision {
  action: Action;
  /** `namespace/name` of the policy that decided; absent when no policy knows the connection. */
  policy?: string;
  rule?: string;
  reason: string;
  /** The approval settings of the requireApproval rule. */
  approval?: NonNullable<Rule["approval"]>;
  /** A requireApproval rule with a grantTtl: what its grant lets through (the rule's match, as text). */
  grantCovers?: string;
  /** Set when the guard refused on its own (decisions/refusals.ts names the kinds). */
  refusal?: string;
}

export interface PolicyProblem {
  policy: string;
  path: string;
  message: string;
}

export type { Action, Connection, Rule };
