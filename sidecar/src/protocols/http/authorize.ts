// The decision half of a request: destination → connection, path normalization, identity, policy
// decision, body-size preflight and approval. Every refusal is answered protocol-natively through
// a Responder (a ServerResponse, or the raw socket of an upgrade) and audited; what comes out is an
// exchange that may be forwarded.
import type { IncomingMessage } from "node:http";
import { performance } from "node:perf_hooks";
import type { ApprovalWaiting } from "../../approvals/gate.ts";
import { httpOperation, judgeHttp } from "../../decisions/http.ts";
import { refusal } from "../../decisions/refusals.ts";
import { isIdentityError } from "../../identity/index.ts";
import { type ApprovalResult, recordApproval } from "../../operations/approval-step.ts";
import { connectionMasking } from "../../operations/masking.ts";
import type { CompiledConnection, PolicySet } from "../../policy/compile.ts";
import { splitTarget } from "../../policy/http-path.ts";
import type { Decision, Subject } from "../../policy/types.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import type { MessageInspector } from "../mcp/answers.ts";
import type { McpWaits } from "../mcp/approval.ts";
import { authorizeMcp } from "../mcp/authorize.ts";
import type { AnswerServer } from "../mcp/server-messages.ts";
import type { McpSessions } from "../mcp/sessions.ts";
import type { ToolPins } from "../mcp/tool-pins.ts";
import { type ApprovalGate, askApproval } from "./approval.ts";
import { DEFAULT_MAX_BODY_BYTES } from "./body.ts";
import { createExchange, type Exchange } from "./exchange.ts";
import { declaredLength } from "./headers.ts";
import { identityStatus, resolveIdentity, workloadAuditIdentity } from "./identity.ts";
import type { ErrorBody, RefuseOptions } from "./respond.ts";

export interface Responder {
  refuse(status: number, body: ErrorBody, opts?: RefuseOptions): void;
  /** Sends a JSON body as is (MCP's JSON-RPC errors); absent on raw sockets. */
  json?(status: number, body: unknown, close?: boolean): void;
  /** Tells the agent at once that the request waits for approval (a 103 with X-Airlock-Approval-*). */
  waiting?(w: ApprovalWaiting): void;
}

export interface Route {
  set: PolicySet;
  /** The policy connection, or undefined when the destination matches none. */
  connection: CompiledConnection | undefined;
  /** `host:port` the agent asked for, reported when it matches no connection. */
  destination: string;
  /** Origin-form path and query as the agent sent them. */
  pathAndQuery: string;
}

export interface Authorized {
  ex: Exchange;
  connection: CompiledConnection;
  /** Normalized path plus the untouched query: what the upstream gets. */
  forwardTarget: string;
  subject: Subject;
  /** The request body, already read whole (MCP: parsed and judged); forwarded instead of the stream. */
  body?: Buffer;
  /**
   * MCP: every JSON-RPC message of the server's answer goes through the inspector this returns (a
   * JSON answer read whole, bounded by maxResponseBodyBytes; SSE event by event). `answerServer`
   * posts a message to the server as the agent would.
   */
  mcpAnswer?: (answerServer: AnswerServer) => MessageInspector;
  /** Sees the upstream's response headers before anything is relayed (MCP session binding). */
  onResponseHeaders?: (headers: IncomingMessage["headers"]) => void;
}

export interface AuthorizeDeps {
  ctx: SidecarContext;
  approvals: ApprovalGate | undefined;
  /** MCP requests waiting for approval (a notifications/cancelled ends the wait). */
  mcpWaits: McpWaits;
  /** Which subject each Mcp-Session-Id belongs to. */
  mcpSessions: McpSessions;
  /** MCP tool-definition pins. */
  mcpPins: ToolPins;
}

/** Refuses a destination that no policy connection covers (fail closed). */
export function refuseUnknown(
  ctx: SidecarContext,
  ex: Exchange,
  destination: string,
  responder: Responder,
): void {
  ex.decide(refusal("unknownDestination", undefined, destination));
  ctx.metrics.unknownDestinations.inc();
  ex.finish();
  responder.refuse(403, {
    error: "unknown_destination",
    destination,
    reason: "no Airlock policy connection matches this destination",
  });
}

function denial(decision: Decision): ErrorBody {
  return {
    error: "denied",
    policy: decision.policy ?? null,
    rule: decision.rule ?? null,
    reason: decision.reason,
  };
}

export async function authorize(
  deps: AuthorizeDeps,
  req: IncomingMessage,
  session: string,
  route: Route,
  agentResponder: Responder,
  websocket: boolean,
  /** Receives the exchange as soon as it exists, so the caller can audit an agent that goes away. */
  track: (ex: Exchange) => void = () => undefined,
): Promise<Authorized | undefined> {
  const { ctx } = deps;
  const method = (req.method ?? "GET").toUpperCase();
  const { path, query } = splitTarget(route.pathAndQuery);
  const ex = createExchange(ctx, {
    session,
    connection: route.connection?.spec.name ?? "",
    identity: workloadAuditIdentity(ctx),
    operation: { kind: "tcp", destination: route.destination },
    failClosed: () => req.socket.destroy(),
  });
  track(ex);
  const connection = route.connection;
  if (!connection) {
    refuseUnknown(ctx, ex, route.destination, agentResponder);
    return undefined;
  }
  // From here on, refusals speak the connection's API.
  const format = connection.spec.errorFormat;
  const responder: Responder = {
    ...agentResponder,
    refuse: (status, body, opts) => agentResponder.refuse(status, body, { ...opts, format }),
  };

  const t0 = performance.now();
  const judged = httpOperation(method, path, websocket);
  const t1 = performance.now();
  ex.operation = judged.operation;
  if (!judged.ok) {
    // The refused path is not recorded: it is attacker-shaped and may carry data.
    ex.decide(judged.decision).finish();
    responder.refuse(400, { error: "bad_path", reason: judged.detail });
    return undefined;
  }
  const operation = judged.operation;

  let subject: Subject;
  try {
    const identity = await resolveIdentity(ctx, connection, req.headers);
    subject = identity.subject;
    ex.identity = identity.audit;
  } catch (err) {
    if (!isIdentityError(err)) throw err;
    ex.decide(refusal("identityRefused", undefined, err.code)).finish();
    responder.refuse(identityStatus(err), { error: "invalid_identity", code: err.code, reason: err.message });
    return undefined;
  }

  if (connection.spec.protocol === "mcp") {
    const json = agentResponder.json;
    if (websocket || !json) {
      ex.operation = { kind: "mcp", method: "(websocket)" };
      ex.decide(
        refusal("badTarget", connection.policy, "MCP connections carry no WebSocket upgrades"),
      ).finish();
      responder.refuse(403, { error: "denied", reason: "MCP connections carry no WebSocket upgrades" });
      return undefined;
    }
    return authorizeMcp({
      ctx,
      req,
      session,
      ex,
      set: route.set,
      connection,
      subject,
      forwardTarget: judged.forwardPath + query,
      reply: { json },
      approvals: deps.approvals,
      waits: deps.mcpWaits,
      sessions: deps.mcpSessions,
      pins: deps.mcpPins,
    });
  }

  // Decision time: classifying (path normalization) plus evaluating; token verification, which
  // may wait on the IdP's JWKS, is not part of it.
  const t2 = performance.now();
  const decision = judgeHttp(route.set, connection.spec.name, subject, operation);
  ctx.metrics.decisionSeconds.observe({ protocol: "http" }, (t1 - t0 + performance.now() - t2) / 1000);
  ex.decide(decision);

  if (decision.action === "deny") {
    ex.finish();
    responder.refuse(403, denial(decision));
    return undefined;
  }

  // Masking is resolved before anyone is asked to approve: a broken configuration refuses now.
  const masking = connectionMasking(connection, ctx.hashKey);
  if ("error" in masking.request || "error" in masking.response) {
    ctx.logger.error(
      { connection: connection.spec.name },
      "masking rules for this connection do not compile",
    );
    ex.upstream = { error: "masking_unavailable" };
    ex.finish();
    responder.refuse(500, {
      error: "masking_unavailable",
      reason: "this connection's masking rules are unusable, so nothing is forwarded",
    });
    return undefined;
  }

  // WebSocket frames are not masked: where masking applies the upgrade is refused, before approval.
  const maskedDirections = (["request", "response"] as const).filter((d) => {
    const slot = masking[d];
    return "masker" in slot && slot.masker !== undefined;
  });
  if (websocket && maskedDirections.length > 0) {
    ex.upstream = { error: "websocket_unmaskable" };
    ex.finish();
    responder.refuse(403, {
      error: "websocket_unmaskable",
      reason: `this connection masks ${maskedDirections.join(" and ")} values and WebSocket frames are not masked, so the upgrade is refused`,
    });
    return undefined;
  }

  if (!websocket) {
    const max = connection.spec.limits?.maxRequestBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    const declared = declaredLength(req.headers);
    if (declared !== undefined && !(declared <= max)) {
      ex.upstream = { error: "request_body_too_large" };
      ex.finish();
      responder.refuse(
        413,
        { error: "request_body_too_large", limit: max, reason: `request bodies are limited to ${max} bytes` },
        { close: true },
      );
      return undefined;
    }
  }

  if (decision.action === "requireApproval") {
    const result = await askApproval(deps, req, session, ex, decision, subject, {
      protocol: "http",
      ...(responder.waiting ? { onWaiting: (w: ApprovalWaiting) => responder.waiting?.(w) } : {}),
    });
    recordApproval(ex, decision, result);
    if (!result.approved) {
      ex.finish();
      responder.refuse(403, approvalRefusal(decision, result));
      return undefined;
    }
  }

  return { ex, connection, forwardTarget: judged.forwardPath + query, subject };
}

/** The 403 body of an approval that did not let the request through. */
function approvalRefusal(
  decision: Decision,
  result: Extract<ApprovalResult, { approved: false }>,
): ErrorBody {
  const error =
    result.status === "denied"
      ? "approval_denied"
      : result.status === "failed" || result.status === "unconfigured"
        ? "approval_unavailable"
        : "approval_required";
  return {
    error,
    policy: decision.policy ?? null,
    rule: decision.rule ?? null,
    ...(result.request !== undefined ? { request: result.request, status: result.status } : {}),
    reason: result.message,
    ...(result.hint !== undefined ? { hint: result.hint } : {}),
  };
}
