// Writes audit events as pino JSON lines marked `"audit": true`. `emit` is synchronous from the
// caller's point of view: handlers call it before releasing a response, so an operation is never
// visible to the agent without its audit record having been handed to the logger first.
//
// Hot path: one line per operation. The audit child logger has no redaction (pino's wildcard
// redact paths clone and re-walk every top-level value of every line, and were the largest CPU
// and allocation cost per proxied request). It does not need it: audit lines are built here from
// the AuditEvent schema only — fields picked one by one, never spread — and that schema carries
// shapes (service account, method, normalized path, rule, detector names and counts, status
// codes), never headers, bodies, query strings or credentials. The general logger keeps its
// redaction as the second line of defence for diagnostics.
import type { Logger } from "pino";
import { AUDIT_SCHEMA_VERSION, type AuditEvent } from "./events.ts";

export interface AuditSink {
  emit(event: AuditEvent): void;
}

export function createAuditSink(logger: Logger): AuditSink {
  // Audit records are not diagnostics: they are written whatever the log level is set to.
  const audit = logger.child({ audit: true, v: AUDIT_SCHEMA_VERSION }, { level: "info", redact: [] });
  return {
    emit(event) {
      // Only schema fields, in schema order; optional ones only when present.
      const line: Record<string, unknown> = {
        event: "operation",
        session: event.session,
        connection: event.connection,
        protocol: event.protocol,
        identity: event.identity,
        operation: event.operation,
        decision: event.decision,
      };
      if (event.approval !== undefined) line.approval = event.approval;
      if (event.masked !== undefined) line.masked = event.masked;
      if (event.upstream !== undefined) line.upstream = event.upstream;
      if (event.rows !== undefined) line.rows = event.rows;
      line.durationMs = event.durationMs;
      audit.info(line, `${event.protocol} ${event.connection} ${event.decision.action}`);
    },
  };
}

/** For tests and the CLI: collects events in memory. */
export function createMemoryAuditSink(): AuditSink & { events: AuditEvent[] } {
  const events: AuditEvent[] = [];
  return { events, emit: (e) => void events.push(e) };
}
