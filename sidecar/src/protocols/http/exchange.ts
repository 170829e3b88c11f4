// One HTTP request as an operation of the shared lifecycle (operations/lifecycle.ts): each request
// has its own operation log (an agent connection on the explicit proxy may reach several policy
// connections), and its audit event is emitted exactly once, before the response (or, for
// streamed SSE, its final chunk) is released to the agent.
import type { AuditIdentity, AuditOperation } from "../../audit/events.ts";
import { type Operation, OperationLog } from "../../operations/lifecycle.ts";
import type { Decision } from "../../policy/types.ts";
import type { SidecarContext } from "../../runtime/context.ts";

export type Exchange = Operation;

export function createExchange(
  ctx: SidecarContext,
  init: {
    session: string;
    connection: string;
    identity: AuditIdentity;
    operation: AuditOperation;
    /** Closes the agent's side when the audit event cannot be written. */
    failClosed(): void;
  },
): Exchange {
  const log = new OperationLog(ctx, {
    session: init.session,
    connection: init.connection,
    protocol: "http",
    identity: init.identity,
    failClosed: init.failClosed,
  });
  return log.begin(init.operation);
}

/** Records the decision on the exchange (counted with its audit event). */
export function recordDecision(_ctx: SidecarContext, ex: Exchange, decision: Decision): void {
  ex.decide(decision);
}

/** Adds masking findings (by detector) to the record (counted with its audit event). */
export function recordMasked(_ctx: SidecarContext, ex: Exchange, counts: Record<string, number>): void {
  ex.addMasked(counts);
}

/** Ends the exchange unless it already ended; returns whether this call emitted its audit event. */
export function emitAudit(_ctx: SidecarContext, ex: Exchange): boolean {
  return ex.end();
}
