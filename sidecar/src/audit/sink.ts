// Writes audit events as pino JSON lines marked `"audit": true`. `emit` is synchronous from the
// caller's point of view: handlers call it before releasing a response, so an operation is never
// visible to the agent without its audit record having been handed to the logger first.
import type { Logger } from "pino";
import { AUDIT_SCHEMA_VERSION, type AuditEvent } from "./events.ts";

export interface AuditSink {
  emit(event: AuditEvent): void;
}

export function createAuditSink(logger: Logger): AuditSink {
  // Audit records are not diagnostics: they are written whatever the log level is set to.
  const audit = logger.child({ audit: true, v: AUDIT_SCHEMA_VERSION }, { level: "info" });
  return {
    emit(event) {
      audit.info(
        { event: "operation", ...event },
        `${event.protocol} ${event.connection} ${event.decision.action}`,
      );
    },
  };
}

/** For tests and the CLI: collects events in memory. */
export function createMemoryAuditSink(): AuditSink & { events: AuditEvent[] } {
  const events: AuditEvent[] = [];
  return { events, emit: (e) => void events.push(e) };
}
