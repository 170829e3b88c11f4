// What the sidecar does with each message an MCP server sends back (answers.ts takes them out of
// the JSON body or SSE stream):
//   - a request to the agent (sampling/createMessage, elicitation/create, roots/list, ping) is
//     judged as an operation of origin server (match.mcp.serverRequests); refused, it is dropped,
//     the server gets a JSON-RPC error in its place, and it is audited; allowed, it is relayed
//     (and audited);
//   - an answer to a list request is filtered (list-filter.ts), tools/list entries first held to
//     their pinned definitions (tool-pins.ts): a changed one is removed and audited;
//   - notifications and other answers pass.
import { BUILTIN_RULE } from "../../decisions/refusals.ts";
import type { CompiledConnection, PolicySet } from "../../policy/compile.ts";
import type { Decision, Subject } from "../../policy/types.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import type { Message, MessageInspector } from "./answers.ts";
import { type JsonRpcId, jsonRpcError, type McpOperation, POLICY_REFUSED } from "./jsonrpc.ts";
import { filterMessage, type Judge, type ListMethod } from "./list-filter.ts";
import { serverMethodLabel, toolLabel } from "./metric-labels.ts";
import type { PinVerdict, ToolPins } from "./tool-pins.ts";

export interface AnswerDeps {
  ctx: SidecarContext;
  set: PolicySet;
  connection: CompiledConnection;
  subject: Subject;
  pins: ToolPins;
  /** List requests of the agent's POST, by id. */
  lists: ReadonlyMap<JsonRpcId, ListMethod>;
  /** Records one operation (its own audit event) with its decision. */
  audit(op: McpOperation, decision: Decision): void;
}

/** Posts a message to the server as the agent would (the error answering a refused request). */
export type AnswerServer = (message: unknown) => void;

const builtin = (connection: CompiledConnection, reason: string): Decision => ({
  action: "deny",
  policy: connection.policy,
  rule: BUILTIN_RULE,
  reason,
});

/** Why a tool is refused, and what to do about it: said to the agent, the audit and the log. */
export function pinRefusal(tool: string, v: Exclude<PinVerdict, { ok: true }>): string {
  if (v.why === "full")
    return `tool ${tool} cannot be pinned: this sidecar already pins as many tools as it keeps for this server; pin it in the policy (connections[].mcp.pinnedTools, digest ${v.seen})`;
  const pin = v.source === "policy" ? "the policy pins" : "this sidecar first saw";
  return `the definition of tool ${tool} changed: ${pin} ${v.pinned}, the server now lists ${v.seen}. The server may have changed what the tool does, so it is not offered; if the change is expected, review it and pin ${v.seen} for ${tool} in the policy (connections[].mcp.pinnedTools)`;
}

export function countPinRefusal(
  ctx: SidecarContext,
  connection: CompiledConnection,
  tool: string,
  v: Exclude<PinVerdict, { ok: true }>,
  where: "list" | "call",
): void {
  ctx.metrics.mcpToolPinRefusals.inc({
    connection: connection.spec.name,
    tool: toolLabel(connection, tool),
    pin: v.why === "full" ? "full" : v.source,
    where,
  });
}

export function createAnswerInspector(deps: AnswerDeps, answerServer: AnswerServer): MessageInspector {
  const { ctx, set, connection, subject, pins } = deps;
  const name = connection.spec.name;
  const use = (list: ListMethod, key: string): McpOperation =>
    list === "tools/list"
      ? { kind: "mcp", method: "tools/call", tool: key }
      : list === "prompts/list"
        ? { kind: "mcp", method: "prompts/get", prompt: key }
        : { kind: "mcp", method: "resources/read", resource: key };
  const judge: Judge = (list, key, entry) => {
    if (list === "tools/list") {
      const v = pins.observe(connection, { ...entry, name: key });
      if (!v.ok) {
        const reason = pinRefusal(key, v);
        deps.audit({ kind: "mcp", method: "tools/list", tool: key }, builtin(connection, reason));
        countPinRefusal(ctx, connection, key, v, "list");
        ctx.logger.warn({ connection: name, tool: key, digest: v.seen }, "MCP tool definition refused");
        return "drop";
      }
      if (v.pinnedNow)
        ctx.logger.info({ connection: name, tool: key, digest: v.digest }, "MCP tool pinned at first sight");
    }
    // No arguments exist here: conditional rules decide nothing about whether a tool is shown, but
    // a tool some of whose calls wait for approval says so.
    const op = use(list, key);
    const d = set.evaluate(name, subject, op, "any-arguments");
    if (d.action === "requireApproval") return "approval";
    if (d.action !== "allow") return "drop";
    const strictest = list === "tools/list" ? set.evaluate(name, subject, op, "some-arguments") : d;
    return strictest.action === "requireApproval" ? "maybe-approval" : "keep";
  };

  const serverRequest = (m: Message): boolean => {
    const method = typeof m.method === "string" ? m.method : "(not a string)";
    const op: McpOperation = { kind: "mcp", method, origin: "server" };
    let d = set.evaluate(name, subject, op);
    if (d.action === "requireApproval")
      d = { ...d, action: "deny", reason: "a server's request cannot wait for approval" };
    deps.audit(op, d);
    ctx.metrics.mcpServerRequests.inc({
      connection: name,
      method: serverMethodLabel(method),
      decision: d.action,
    });
    if (d.action === "allow") return true;
    const by = d.rule ? `rule ${d.rule}` : "no rule allows it (default deny)";
    answerServer(
      jsonRpcError(
        (m.id ?? null) as JsonRpcId,
        POLICY_REFUSED,
        `Airlock refused ${method} from the server: ${by}${d.policy ? ` of policy ${d.policy}` : ""}: the agent's policy does not admit this request (match.mcp.serverRequests)`,
        { airlock: { decision: d.action, policy: d.policy ?? null, rule: d.rule ?? null, method } },
      ),
    );
    return false;
  };

  return (m) => {
    if ("method" in m) {
      if (!("id" in m)) return m; // a notification (progress, logging, list changed)
      // A request with a malformed id or method is not relayed either way.
      const id = m.id;
      if (typeof m.method !== "string" || !(typeof id === "string" || typeof id === "number")) {
        deps.audit(
          { kind: "mcp", method: "(malformed server request)", origin: "server" },
          builtin(connection, "the server sent a request with a malformed method or id"),
        );
        return undefined;
      }
      return serverRequest(m) ? m : undefined;
    }
    filterMessage(m, deps.lists, judge);
    return m;
  };
}
