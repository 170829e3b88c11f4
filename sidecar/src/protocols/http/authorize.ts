// The decision half of a request: destination → connection, path normalization, identity, policy
// decision, body-size preflight and approval. Every refusal is answered protocol-natively through
// a Responder (a ServerResponse, or the raw socket of an upgrade) and audited; what comes out is an
// exchange that may be forwarded.
import type { IncomingMessage } from "node:http";
import { performance } from "node:perf_hooks";
import { isIdentityError } from "../../identity/index.ts";
import type { CompiledConnection, PolicySet } from "../../policy/compile.ts";
import { normalizePath, PathError, splitTarget } from "../../policy/http-path.ts";
import type { Decision, Operation, Subject } from "../../policy/types.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { type ApprovalGate, approvalReason } from "./approval.ts";
import { DEFAULT_MAX_BODY_BYTES } from "./body.ts";
import { createExchange, type Exchange, emitAudit, recordDecision } from "./exchange.ts";
import { declaredLength } from "./headers.ts";
import { identityStatus, resolveIdentity, workloadAuditIdentity } from "./identity.ts";
import type { ErrorBody } from "./respond.ts";

export interface Responder {
  refuse(status: number, body: ErrorBody, opts?: { close?: boolean }): void;
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
}

export interface AuthorizeDeps {
  ctx: SidecarContext;
  approvals: ApprovalGate | undefined;
}

/** Refuses a destination that no policy connection covers (fail closed). */
export function refuseUnknown(
  ctx: SidecarContext,
  ex: Exchange,
  destination: string,
  responder: Responder,
): void {
  ex.decision = { action: "deny", reason: `no policy connection matches ${destination}` };
  ctx.metrics.unknownDestinations.inc();
  emitAudit(ctx, ex);
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
  responder: Responder,
  websocket: boolean,
  /** Receives the exchange as soon as it exists, so the caller can audit an agent that goes away. */
  track: (ex: Exchange) => void = () => undefined,
): Promise<Authorized | undefined> {
  const { ctx } = deps;
  const method = (req.method ?? "GET").toUpperCase();
  const { path, query } = splitTarget(route.pathAndQuery);
  const ex = createExchange({
    session,
    connection: route.connection?.spec.name ?? "",
    identity: workloadAuditIdentity(ctx),
    operation: { kind: "tcp", destination: route.destination },
  });
  track(ex);
  const connection = route.connection;
  if (!connection) {
    refuseUnknown(ctx, ex, route.destination, responder);
    return undefined;
  }

  const t0 = performance.now();
  let normalized: ReturnType<typeof normalizePath>;
  try {
    normalized = normalizePath(path);
  } catch (err) {
    if (!(err instanceof PathError)) throw err;
    // The refused path is not recorded: it is attacker-shaped and may carry data.
    ex.operation = { kind: "http", method, path: "(refused)", websocket };
    recordDecision(ctx, ex, { action: "deny", reason: `path refused: ${err.message}` });
    emitAudit(ctx, ex);
    responder.refuse(400, { error: "bad_path", reason: err.message });
    return undefined;
  }
  const t1 = performance.now();
  const operation: Operation = { kind: "http", method, path: normalized.match, websocket };
  ex.operation = operation;

  let subject: Subject;
  try {
    const identity = await resolveIdentity(ctx, connection, req.headers);
    subject = identity.subject;
    ex.identity = identity.audit;
  } catch (err) {
    if (!isIdentityError(err)) throw err;
    recordDecision(ctx, ex, { action: "deny", reason: `identity token refused (${err.code})` });
    emitAudit(ctx, ex);
    responder.refuse(identityStatus(err), { error: "invalid_identity", code: err.code, reason: err.message });
    return undefined;
  }

  // Decision time: classifying (path normalization) plus evaluating; token verification, which
  // may wait on the IdP's JWKS, is not part of it.
  const t2 = performance.now();
  const decision = route.set.evaluate(connection.spec.name, subject, operation);
  ctx.metrics.decisionSeconds.observe({ protocol: "http" }, (t1 - t0 + performance.now() - t2) / 1000);
  recordDecision(ctx, ex, decision);

  if (decision.action === "deny") {
    emitAudit(ctx, ex);
    responder.refuse(403, denial(decision));
    return undefined;
  }

  if (!websocket) {
    const max = connection.spec.limits?.maxRequestBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    const declared = declaredLength(req.headers);
    if (declared !== undefined && !(declared <= max)) {
      ex.upstream = { error: "request_body_too_large" };
      emitAudit(ctx, ex);
      responder.refuse(
        413,
        { error: "request_body_too_large", limit: max, reason: `request bodies are limited to ${max} bytes` },
        { close: true },
      );
      return undefined;
    }
  }

  if (decision.action === "requireApproval") {
    const approved = await approve(deps, req, session, ex, decision, subject, responder);
    if (!approved) return undefined;
  }

  return { ex, connection, forwardTarget: normalized.forward + query, subject };
}

async function approve(
  deps: AuthorizeDeps,
  req: IncomingMessage,
  session: string,
  ex: Exchange,
  decision: Decision,
  subject: Subject,
  responder: Responder,
): Promise<boolean> {
  const { ctx, approvals } = deps;
  const base = { policy: decision.policy ?? null, rule: decision.rule ?? null };
  if (!approvals) {
    ex.upstream = { error: "approval_unavailable" };
    emitAudit(ctx, ex);
    responder.refuse(403, {
      error: "approval_unavailable",
      ...base,
      reason: `${decision.reason}, and this sidecar has no approval service configured`,
    });
    return false;
  }
  const abort = new AbortController();
  const onClose = () => abort.abort();
  req.socket.once("close", onClose);
  try {
    const reason = approvalReason(req.headers);
    const outcome = await approvals.request({
      connection: ex.connection,
      protocol: "http",
      decision,
      subject,
      operation: ex.operation,
      session,
      signal: abort.signal,
      ...(reason !== undefined ? { reason } : {}),
    });
    if (outcome.approved) {
      ex.approval = {
        request: outcome.request,
        approvers: outcome.approvers ?? [],
        ...(outcome.grant !== undefined ? { grant: outcome.grant } : {}),
      };
      return true;
    }
    const status = outcome.status ?? "pending";
    // `approval` in the audit schema means "an approval let it through"; here it did not.
    ex.decision = {
      ...ex.decision,
      reason: `${decision.reason}; approval request ${outcome.request} ${status}`,
    };
    ex.upstream = { error: `approval_${status}` };
    emitAudit(ctx, ex);
    responder.refuse(403, {
      error: outcome.status === "denied" ? "approval_denied" : "approval_required",
      ...base,
      request: outcome.request,
      status,
      reason: outcome.message ?? decision.reason,
    });
    return false;
  } catch (err) {
    ctx.logger.warn(
      { connection: ex.connection, err: err instanceof Error ? err.message : String(err) },
      "approval service failed",
    );
    ex.upstream = { error: "approval_unavailable" };
    emitAudit(ctx, ex);
    responder.refuse(403, { error: "approval_unavailable", ...base, reason: decision.reason });
    return false;
  } finally {
    req.socket.off("close", onClose);
  }
}
