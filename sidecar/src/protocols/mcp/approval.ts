// Approvals for MCP requests. The ask itself is the HTTP listeners' (askApproval, the shared
// approval step, one AccessRequest per operation); what is MCP's own:
//   - what the approver sees: `tools/call NAME` with the arguments as the connection's request
//     masking leaves them and a keyed digest of the arguments as sent (so two calls with different
//     arguments are different requests, and approving one never lets the other through);
//   - a client's `notifications/cancelled` (a separate POST) ends the wait of the request it names;
//   - the JSON-RPC error an agent gets when the approval did not let the request through.
import { createHmac } from "node:crypto";
import { ApprovalWaitCanceled } from "../../approvals/gate.ts";
import type { Masker } from "../../masking/index.ts";
import { type ApprovalResult, approvalErrorCode } from "../../operations/approval-step.ts";
import type { Decision, Subject } from "../../policy/types.ts";
import type { JsonRpcId, McpOperation } from "./jsonrpc.ts";

/** Longest rendering of the (masked) arguments in the summary; the digest covers them all. */
const MAX_ARGUMENTS_TEXT = 1024;

/** JSON with object keys sorted, so the digest does not depend on the client's key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (typeof v === "object" && v !== null)
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(v) ?? "null";
}

/** A keyed digest of tool arguments: stable for one install, reveals nothing without the key. */
export function argumentsDigest(key: Buffer, args: unknown): string {
  return createHmac("sha256", key)
    .update(canonical(args ?? null))
    .digest("hex")
    .slice(0, 16);
}

/**
 * The approval summary of an MCP request. Tool arguments are shown only as the request masker
 * leaves them (the approval gate runs its secret/PII detectors over the text again).
 */
export function approvalSummary(
  op: McpOperation,
  args: unknown,
  masker: Masker | undefined,
  key: Buffer,
): string {
  const target = op.tool ?? op.resource ?? op.prompt;
  const head = target === undefined ? op.method : `${op.method} ${target}`;
  if (op.method !== "tools/call") return head;
  const shown = masker ? masker.maskJson(args ?? {}).value : (args ?? {});
  let text = JSON.stringify(shown) ?? "{}";
  if (text.length > MAX_ARGUMENTS_TEXT) text = `${text.slice(0, MAX_ARGUMENTS_TEXT - 1)}…`;
  return `${head} ${text} (arguments digest ${argumentsDigest(key, args)})`;
}

/**
 * Requests waiting for approval, by who sent them (connection, MCP session, subject) and their
 * JSON-RPC id: a `notifications/cancelled` from the same sender ends that wait.
 */
export interface McpWaits {
  /** Registers a waiting request; `release` when the wait is over. */
  watch(scope: string, id: JsonRpcId): { signal: AbortSignal; release(): void };
  /** Cancels the waits of `ids` in `scope`; returns how many were waiting. */
  cancel(scope: string, ids: readonly JsonRpcId[]): number;
}

export function waitScope(connection: string, mcpSession: string | undefined, subject: Subject): string {
  return JSON.stringify([connection, mcpSession ?? "", subject.serviceAccount, subject.user ?? ""]);
}

export function createMcpWaits(): McpWaits {
  const waiting = new Map<string, Set<AbortController>>();
  const k = (scope: string, id: JsonRpcId) => `${scope}\n${typeof id}:${String(id)}`;
  return {
    watch(scope, id) {
      const key = k(scope, id);
      const ac = new AbortController();
      const set = waiting.get(key) ?? new Set<AbortController>();
      waiting.set(key, set);
      set.add(ac);
      return {
        signal: ac.signal,
        release() {
          set.delete(ac);
          if (set.size === 0 && waiting.get(key) === set) waiting.delete(key);
        },
      };
    },
    cancel(scope, ids) {
      let n = 0;
      for (const id of ids) {
        const set = waiting.get(k(scope, id));
        for (const ac of set ?? []) {
          ac.abort(new ApprovalWaitCanceled());
          n++;
        }
      }
      return n;
    },
  };
}

/** The error data of a request an approval did not let through: the outcome, the request, a hint. */
export function approvalErrorData(
  d: Decision,
  op: McpOperation,
  result: Extract<ApprovalResult, { approved: false }>,
) {
  return {
    airlock: {
      decision: d.action,
      policy: d.policy ?? null,
      rule: d.rule ?? null,
      method: op.method,
      ...(op.tool !== undefined ? { tool: op.tool } : {}),
      error: approvalErrorCode(result.status),
      approval: {
        status: result.status,
        ...(result.request !== undefined ? { request: result.request } : {}),
        ...(result.canceled ? { canceled: true } : {}),
      },
      reason: result.message,
      ...(result.hint !== undefined ? { hint: result.hint } : {}),
    },
  };
}
