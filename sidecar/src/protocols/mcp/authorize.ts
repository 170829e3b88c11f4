// The MCP half of authorization on a `protocol: mcp` connection: a POST body is read whole (under
// the connection's request limit), parsed as JSON-RPC and every request in it judged by the policy
// (deny → requireApproval → allow → default deny) and audited as its own operation. A refused
// request is answered with a JSON-RPC error and never reaches the server; a batch with any refused
// request is refused as a whole (simplest safe choice: no partial forwarding to reassemble).
// GET (the server's SSE stream) and DELETE (session end) pass when some rule could admit anything
// for the subject on this connection. A request a requireApproval rule matches waits for an
// AccessRequest (approval.ts) and is forwarded once approved; list answers are filtered
// (list-filter.ts).
import type { IncomingMessage } from "node:http";
import { type ApprovalGate, ApprovalWaitCanceled } from "../../approvals/gate.ts";
import { BUILTIN_RULE } from "../../decisions/refusals.ts";
import { recordApproval } from "../../operations/approval-step.ts";
import { connectionMasking } from "../../operations/masking.ts";
import type { CompiledConnection, PolicySet } from "../../policy/compile.ts";
import type { Decision, Subject } from "../../policy/types.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { askApproval } from "../http/approval.ts";
import type { Authorized } from "../http/authorize.ts";
import { BodyDecodeError, BodyTooLargeError, DEFAULT_MAX_BODY_BYTES, readAll } from "../http/body.ts";
import { decoders } from "../http/content.ts";
import { createExchange, type Exchange } from "../http/exchange.ts";
import { approvalErrorData, approvalSummary, type McpWaits, waitScope } from "./approval.ts";
import {
  INVALID_REQUEST,
  type JsonRpcId,
  jsonRpcError,
  type McpOperation,
  PARSE_ERROR,
  POLICY_REFUSED,
  parseMcpBody,
} from "./jsonrpc.ts";
import { isListMethod, type ListMethod } from "./list-filter.ts";
import { mcpLabels } from "./metric-labels.ts";
import { countPinRefusal, createAnswerInspector, pinRefusal } from "./server-messages.ts";
import type { McpSessions } from "./sessions.ts";
import type { ToolPins } from "./tool-pins.ts";

/** Under the TypeScript SDK's default request timeout (60 s). */
export const DEFAULT_APPROVAL_WAIT_SECONDS = 50;

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
  approvals: ApprovalGate | undefined;
  /** Requests waiting for approval, so that a notifications/cancelled can end the wait. */
  waits: McpWaits;
  sessions: McpSessions;
  /** Tool-definition pins (first sight, per sidecar process, or the policy's). */
  pins: ToolPins;
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
  const header = req.headers["mcp-session-id"];
  const sessionId = Array.isArray(header) ? header[0] : header;
  const sessionDigest = sessionId === undefined ? undefined : input.sessions.digest(sessionId);
  /** Every operation of this request carries the session (as a digest). */
  const tag = (op: McpOperation): McpOperation =>
    sessionDigest === undefined ? op : { ...op, session: sessionDigest };
  /** One operation of its own (a server request, a refused tool definition): audited at once. */
  const audit = (op: McpOperation, d: Decision) =>
    createExchange(ctx, {
      session: input.session,
      connection: name,
      identity: ex.identity,
      operation: tag(op),
      failClosed: () => req.socket.destroy(),
    })
      .decide(d)
      .finish();
  const done = (body?: Buffer, lists: ReadonlyMap<JsonRpcId, ListMethod> = new Map()): Authorized => ({
    ex,
    connection,
    forwardTarget: input.forwardTarget,
    subject,
    ...(body ? { body } : {}),
    // Whatever the server sends back is read message by message: server requests, list answers.
    mcpAnswer: (answerServer) =>
      createAnswerInspector({ ctx, set, connection, subject, pins: input.pins, lists, audit }, answerServer),
    // The server issues the session id in its answer to initialize: it belongs to this subject.
    onResponseHeaders: (headers) => {
      const issued = headers["mcp-session-id"];
      if (typeof issued !== "string" || issued === sessionId) return;
      if (!input.sessions.claim(name, issued, subject))
        ctx.logger.warn({ connection: name }, "the MCP server issued a session id bound to another subject");
      if (ex.operation.kind === "mcp")
        ex.operation = { ...ex.operation, session: input.sessions.digest(issued) };
    },
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
    ex.operation = tag(op);
    const d: Decision = admitsAnything
      ? builtin("allow", allowedBecause)
      : { action: "deny", policy: connection.policy, reason: "no rule allows this operation (default deny)" };
    ex.decide(d);
    if (d.action === "allow") return true;
    ex.finish();
    reply.json(403, jsonRpcError(null, POLICY_REFUSED, refusalMessage(d, op), airlockData(d, op)));
    return false;
  };

  if (sessionId !== undefined && !input.sessions.claim(name, sessionId, subject)) {
    // Another subject's session: presenting its id would act as that subject at the server.
    const op = tag({ kind: "mcp", method: "(session)" });
    ex.operation = op;
    const d = builtin("deny", "this Mcp-Session-Id belongs to another subject");
    ex.decide(d).finish();
    reply.json(403, jsonRpcError(null, POLICY_REFUSED, refusalMessage(d, op), airlockData(d, op)));
    return undefined;
  }

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
    ex.operation = tag({ kind: "mcp", method: "(unparsed)" });
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

  const scope = waitScope(name, sessionId, subject);
  if (parsed.cancelled.length > 0) input.waits.cancel(scope, parsed.cancelled);

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
            operation: tag(r.operation),
            failClosed: () => req.socket.destroy(),
          });
    own.operation = tag(r.operation);
    // tools/call arguments are seen by match.mcp.when only (never audited).
    let d = set.evaluate(
      name,
      subject,
      r.operation,
      r.operation.method === "tools/call" ? { arguments: r.arguments } : undefined,
    );
    if (d.action !== "deny" && r.operation.method === "tools/call" && r.operation.tool !== undefined) {
      const pin = input.pins.check(connection, r.operation.tool);
      if (!pin.ok) {
        d = builtin("deny", pinRefusal(r.operation.tool, pin));
        countPinRefusal(ctx, connection, r.operation.tool, pin, "call");
      }
    }
    if (d.action === "requireApproval" && parsed.requests.length > 1)
      // One wait per HTTP request keeps cancel and the answer simple: batches fail closed.
      d = {
        ...d,
        action: "deny",
        reason: `rule ${d.rule} requires approval, which is not offered inside a batch: send the request alone`,
      };
    own.decide(d);
    ctx.metrics.mcpRequests.inc({
      connection: name,
      ...mcpLabels(connection, r.operation),
      decision: d.action,
    });
    return { id: r.id, op: r.operation, args: r.arguments, decision: d, ex: own };
  });
  for (const j of judged.slice(1)) j.ex.finish();
  const refused = judged.find((j) => j.decision.action === "deny");
  if (!refused) {
    const held = judged.find((j) => j.decision.action === "requireApproval");
    if (held && !(await approved(input, scope, held))) return undefined;
    const lists = new Map<JsonRpcId, ListMethod>();
    for (const j of judged) if (isListMethod(j.op.method)) lists.set(j.id, j.op.method);
    return done(body, lists);
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

/**
 * Holds one request for approval (the shared approval step, as on plain HTTP); true once approved.
 * Otherwise the agent has been answered with a JSON-RPC error naming the outcome.
 */
async function approved(
  input: McpAuthorizeInput,
  scope: string,
  held: { id: JsonRpcId; op: McpOperation; args: unknown; decision: Decision; ex: Exchange },
): Promise<boolean> {
  const { ctx, ex, connection, reply } = input;
  /** Refused before anyone is asked: nothing forwarded, the audit event says why. */
  const refuse = (error: "masking_unavailable" | "unmaskable_request_body", why: string) => {
    ex.upstream = { error };
    ex.finish();
    reply.json(200, jsonRpcError(held.id, POLICY_REFUSED, `Airlock refused the request: ${why}`));
    return false;
  };
  // Masking is resolved before anyone is asked: a broken configuration refuses now (fail closed).
  const masking = connectionMasking(connection, ctx.hashKey);
  if ("error" in masking.request || "error" in masking.response)
    return refuse(
      "masking_unavailable",
      "this connection's masking rules are unusable, so nothing is forwarded",
    );
  let summary: string;
  try {
    summary = approvalSummary(held.op, held.args, masking.request.masker, ctx.hashKey);
  } catch {
    // Arguments nested too deeply to mask (or to digest): nobody is asked about what cannot be shown.
    return refuse(
      "unmaskable_request_body",
      "its arguments cannot be masked for the approver (JSON nested too deeply)",
    );
  }
  const wait = input.waits.watch(scope, held.id);
  // The agent is answered before its own request timeout would fire: an error naming the pending
  // AccessRequest is something it can act on (tell its user, retry later); a timeout is not.
  const limit = new AbortController();
  const seconds = connection.spec.mcp?.approvalWaitSeconds ?? DEFAULT_APPROVAL_WAIT_SECONDS;
  const timer = setTimeout(() => limit.abort(new ApprovalWaitCanceled("wait_limit")), seconds * 1000);
  let approveHint: string | undefined;
  let result: Awaited<ReturnType<typeof askApproval>>;
  try {
    result = await askApproval(
      { ctx, approvals: input.approvals },
      input.req,
      input.session,
      ex,
      held.decision,
      input.subject,
      {
        protocol: "mcp",
        summary,
        signal: AbortSignal.any([wait.signal, limit.signal]),
        onWaiting: (w) => {
          approveHint = w.approveHint;
        },
      },
    );
  } finally {
    clearTimeout(timer);
    wait.release();
  }
  if (recordApproval(ex, held.decision, result)) return true;
  ex.finish();
  if (!result.approved) {
    const what = held.op.tool === undefined ? held.op.method : `${held.op.method} ${held.op.tool}`;
    // Still pending: say who can approve it (the gate's hint, e.g. kubectl airlock approve ...).
    if (result.status === "pending" && result.hint === undefined && approveHint !== undefined)
      result = { ...result, hint: `an approver runs: ${approveHint}` };
    reply.json(
      200,
      jsonRpcError(
        held.id,
        POLICY_REFUSED,
        `Airlock did not forward ${what}: ${result.message}${result.hint ? ` (${result.hint})` : ""}`,
        approvalErrorData(held.decision, held.op, result),
      ),
    );
  }
  return false;
}

export type { JsonRpcId };
