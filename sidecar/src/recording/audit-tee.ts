// SQL and HTTP session recordings are the ordered operations of a session with their outcomes:
// exactly what the audit events already say. This sink passes each audit event on and appends
// the HTTP and PostgreSQL ones to their session's JSON-lines recording, so every guard records
// without knowing about recordings. A session's recording ends after `idleMs` without operations
// (the guards do not announce closes here), and a later operation starts a new one.
import type { AuditSink } from "../audit/sink.ts";
import type { PolicyStore } from "../runtime/policy-store.ts";
import type { Recorder } from "./recorder.ts";

export function recordingAuditSink(
  audit: AuditSink,
  recorder: Recorder,
  policies: PolicyStore,
  opts: { idleMs?: number } = {},
): AuditSink & { close(): void } {
  const idleMs = opts.idleMs ?? 60_000;
  const timers = new Map<string, NodeJS.Timeout>();
  return {
    emit(event) {
      audit.emit(event);
      if (event.protocol !== "http" && event.protocol !== "postgres") return;
      const connection = policies.current().connections.get(event.connection);
      if (!connection) return;
      recorder.operation(event.session, {
        connection,
        protocol: event.protocol,
        identity: event.identity,
        operation: event.operation as Record<string, unknown>,
        decision: event.decision,
        ...(event.upstream || event.rows !== undefined
          ? { outcome: { ...event.upstream, ...(event.rows !== undefined ? { rows: event.rows } : {}) } }
          : {}),
        ...(event.masked ? { masked: event.masked } : {}),
        durationMs: event.durationMs,
      });
      clearTimeout(timers.get(event.session));
      const timer = setTimeout(() => {
        timers.delete(event.session);
        void recorder.end(event.session);
      }, idleMs);
      timer.unref();
      timers.set(event.session, timer);
    },
    close() {
      for (const t of timers.values()) clearTimeout(t);
      timers.clear();
    },
  };
}
