// The MCP half of authorization on a `protocol: mcp` connection: a POST body is read whole (under
// the connection's request limit), parsed as JSON-RPC and every request in it judged by the policy
// (deny → requireApproval → allow → default deny) and audited as its own operation. A refused
// request is answered with a JSON-RPC error and never reaches the server; a batch with any refused
// request is refused as a whole (simplest safe choice: no partial forwarding to reassemble).
// GET (the server's SSE stream) and DELETE (session end) pass when some rule could admit anything
// for the subject on this connection.
import type { IncomingMessage } from "node:http";
import { BUILTIN_RULE } from "../../decisions/index.ts";
import type { CompiledConnection, PolicySet } from "../../policy/compile.ts";
import type { Decision, Subject } from "../../policy/types.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import type { Authorized } from "../http/authorize.ts";
import { BodyDecodeError, BodyTooLargeError, DEFAULT_MAX_BODY_BYTES, readAll } from "../http/body.ts";
import { decoders } from "../http/content.ts";
import { createExchange, type Exchange } from "../http/exchange.ts";
import {
  INVALID_REQUEST,
  type JsonRpcId,
  jsonRpcError,
  type McpOperation,
  PARSE_ERROR,
  POLICY_REFUSED,
  parseMcpBody,
} from "./jsonrpc.ts";
import { filterBody, type ToolVerdict } from "./tools-list.ts";

export interface McpReply {
  /** Sends a JSON body as is (JSON-RPC errors are not Airlock's error envelope). */
  json(status: number, body: unknown, close?: boolean): void;
}

export interface McpAuthorizeInput {
  ctx: SidecarContext;
  req: IncomingMessage;
  session: string;
  ex: Exchange;
  set: PolicySet;
  connection: CompiledConnection;
  subject: Subject;
  forwardTarget: string;
  reply: McpReply;
}

const airlockData = (d: Decision, op: McpOperation) => ({
  airlock: {
    decision: d.action,
    policy: d.policy ?? null,
    rule: d.rule ?? null,
    reason: d.reason,
    method: op.method,
    ...(op.tool !== undefined ? { tool: op.tool } : {}),
  },
});

function refusalMessage(d: Decision, op: McpOperation): string {
  const what = op.tool ?? op.resource ?? op.prompt;
  const target = what === undefined ? op.method : `${op.method} ${what}`;
  const by = d.rule ? `rule ${d.rule}` : "no rule allows it (default deny)";
  return `Airlock refused ${target}: ${by}${d.policy ? ` of policy ${d.policy}` : ""}: ${d.reason}`;
}

export async function authorizeMcp(input: McpAuthorizeInput): Promise<Authorized | undefined> {
  const { ctx, req, ex, set, connection, subject, reply } = input;
  const name = connection.spec.name;
  const method = (req.method ?? "GET").toUpperCase();
  const done = (body?: Buffer): Authorized => ({
    ex,
    connection,
    forwardTarget: input.forwardTarget,
    subject,
    ...(body ? { body } : {}),
  });
  const builtin = (action: Decision["action"], reason: string): Decision => ({
    action,
    policy: connection.policy,
    rule: BUILTIN_RULE,
    reason,
  });
  const admitsAnything = set.mayAdmitHttp(name, subject);
  /**
   * Messages that carry no request of their own (the event stream, session end, notifications,
   * responses) pass where some rule admits anything on the connection; otherwise default deny.
   */
  const gate = (op: McpOperation, allowedBecause: string): boolean => {
    ex.operation = op;
    const d: Decision = admitsAnything
      ? builtin("allow", allowedBecause)
      : { action: "deny", policy: connection.policy, reason: "no rule allows this operation (default deny)" };
    ex.decide(d);
    if (d.action === "allow") return true;
    ex.finish();
    reply.json(403, jsonRpcError(null, POLICY_REFUSED, refusalMessage(d, op), airlockData(d, op)));
    return false;
  };

  if (method === "GET" || method === "DELETE") {
    const op = { kind: "mcp", method: method === "GET" ? "(event stream)" : "(session end)" } as const;
    return gate(op, "some rule admits requests on this connection") ? done() : undefined;
  }
  if (method !== "POST") {
    ex.operation = { kind: "mcp", method: `(${method})` };
    ex.decide(builtin("deny", `HTTP ${method} is not part of the MCP Streamable HTTP transport`)).finish();
    reply.json(
      405,
      jsonRpcError(null, INVALID_REQUEST, `Airlock refused HTTP ${method}: MCP uses POST, GET and DELETE`),
    );
    return undefined;
  }

  const refuseInput = (status: number, code: number, message: string, close = false) => {
    ex.operation = { kind: "mcp", method: "(unparsed)" };
    ex.decide(builtin("deny", message)).finish();
    reply.json(status, jsonRpcError(null, code, message), close);
    return undefined;
  };
  const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
  if (type !== "application/json")
    return refuseInput(
      415,
      INVALID_REQUEST,
      "Airlock refused the request: MCP messages must be sent as application/json",
    );
  const max = connection.spec.limits?.maxRequestBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const decs = decoders(req.headers["content-encoding"]);
  if (!decs)
    return refuseInput(415, INVALID_REQUEST, "Airlock refused the request: unsupported Content-Encoding");
  let body: Buffer;
  try {
    body = await readAll(req, decs, max);
  } catch (err) {
    if (err instanceof BodyTooLargeError)
      return refuseInput(
        413,
        INVALID_REQUEST,
        `Airlock refused the request: bodies are limited to ${max} bytes`,
        true,
      );
    if (err instanceof BodyDecodeError)
      return refuseInput(400, PARSE_ERROR, "Airlock refused the request: cannot decode the body", true);
    return undefined; // the agent went away; the guard audits that
  }
  if (decs.length > 0) delete req.headers["content-encoding"];
  const parsed = parseMcpBody(body);
  if (!parsed.ok) return refuseInput(400, parsed.code, parsed.message);

  if (parsed.requests.length === 0) {
    // Notifications and responses only: they travel where the subject may talk at all.
    const op = { kind: "mcp", method: "(notifications)" } as const;
    return gate(op, "notifications and responses pass where some rule admits requests")
      ? done(body)
      : undefined;
  }

  // One operation (audit event) per request: the first rides on the HTTP exchange, which is
  // forwarded; the others end with their decision.
  const judged = parsed.requests.map((r, i) => {
    const own =
      i === 0
        ? ex
        : createExchange(ctx, {
            session: input.session,
            connection: name,
            identity: ex.identity,
            operation: r.operation,
            failClosed: () => req.socket.destroy(),
          });
    own.operation = r.operation;
    let d = set.evaluate(name, subject, r.operation);
    if (d.action === "requireApproval")
      // Not yet wired to the approval gate for MCP: fail closed, naming the rule.
      d = {
        ...d,
        action: "deny",
        reason: `rule ${d.rule} requires approval, which MCP connections do not offer yet`,
      };
    own.decide(d);
    return { id: r.id, op: r.operation, decision: d, ex: own };
  });
  for (const j of judged.slice(1)) j.ex.finish();
  const refused = judged.find((j) => j.decision.action !== "allow");
  if (!refused) {
    const lists = new Set(judged.filter((j) => j.op.method === "tools/list").map((j) => j.id));
    if (lists.size === 0) return done(body);
    const verdict = (tool: string): ToolVerdict => {
      const d = set.evaluate(name, subject, { kind: "mcp", method: "tools/call", tool });
      return d.action === "allow" ? "keep" : d.action === "requireApproval" ? "approval" : "drop";
    };
    return { ...done(body), rewriteResponse: (type, b) => filterBody(type, b, lists, verdict).body };
  }

  ex.finish();
  const errors = judged.map((j) =>
    j.decision.action !== "allow"
      ? jsonRpcError(j.id, POLICY_REFUSED, refusalMessage(j.decision, j.op), airlockData(j.decision, j.op))
      : jsonRpcError(
          j.id,
          POLICY_REFUSED,
          `Airlock refused the whole batch: another request in it (${refused.op.method}) was refused`,
          airlockData(refused.decision, refused.op),
        ),
  );
  reply.json(200, parsed.batch ? errors : errors[0]);
  return undefined;
}

export type { JsonRpcId };
