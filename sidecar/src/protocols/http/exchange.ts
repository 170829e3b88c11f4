// One request's audit record. Built up as the request moves through the guard and emitted exactly
// once, before the response (or, for streamed SSE, its final chunk) is released to the agent.
import { performance } from "node:perf_hooks";
import type { AuditEvent, AuditIdentity, AuditOperation } from "../../audit/events.ts";
import type { Decision } from "../../policy/types.ts";
import type { SidecarContext } from "../../runtime/context.ts";

export interface Exchange {
  readonly session: string;
  /** Policy connection name; "" when the destination matched no connection. */
  readonly connection: string;
  readonly started: number;
  identity: AuditIdentity;
  operation: AuditOperation;
  decision: AuditEvent["decision"];
  approval?: AuditEvent["approval"];
  masked: Record<string, number>;
  upstream?: AuditEvent["upstream"];
  audited: boolean;
}

export function createExchange(init: {
  session: string;
  connection: string;
  identity: AuditIdentity;
  operation: AuditOperation;
}): Exchange {
  return {
    ...init,
    started: performance.now(),
    decision: { action: "deny", reason: "not evaluated" },
    masked: {},
    audited: false,
  };
}

/** Records the decision on the exchange and counts it (once per operation). */
export function recordDecision(ctx: SidecarContext, ex: Exchange, decision: Decision): void {
  ex.decision = {
    action: decision.action,
    reason: decision.reason,
    ...(decision.policy !== undefined ? { policy: decision.policy } : {}),
    ...(decision.rule !== undefined ? { rule: decision.rule } : {}),
  };
  ctx.metrics.operations.inc({ connection: ex.connection, protocol: "http", decision: decision.action });
}

/** Adds masking findings (by detector) to the record and the metrics. */
export function recordMasked(ctx: SidecarContext, ex: Exchange, counts: Record<string, number>): void {
  for (const [detector, n] of Object.entries(counts)) {
    if (n <= 0) continue;
    ex.masked[detector] = (ex.masked[detector] ?? 0) + n;
    ctx.metrics.masked.inc({ connection: ex.connection, detector }, n);
  }
}

export function elapsedMs(ex: Exchange): number {
  return Math.round((performance.now() - ex.started) * 1000) / 1000;
}

/** Emits the audit event unless it was already emitted; returns whether this call emitted it. */
export function emitAudit(ctx: SidecarContext, ex: Exchange): boolean {
  if (ex.audited) return false;
  ex.audited = true;
  const event: AuditEvent = {
    session: ex.session,
    connection: ex.connection,
    protocol: "http",
    identity: ex.identity,
    operation: ex.operation,
    decision: ex.decision,
    durationMs: elapsedMs(ex),
  };
  if (ex.approval) event.approval = ex.approval;
  if (Object.keys(ex.masked).length > 0) event.masked = { ...ex.masked };
  if (ex.upstream) event.upstream = ex.upstream;
  try {
    ctx.audit.emit(event);
  } catch (err) {
    // An audit sink that throws must not take the sidecar down; it is logged (without the event).
    ctx.logger.error({ err: err instanceof Error ? err.message : String(err) }, "audit sink failed");
  }
  return true;
}
