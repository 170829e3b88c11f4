// SQL and HTTP session recordings are the ordered operations of a session with their outcomes:
// exactly what the audit events already say. This sink passes each audit event on and, where a
// policy records sessions to files, appends the HTTP and PostgreSQL ones to their session's
// JSON-lines file, so every guard records without knowing about recordings. (On stdout the audit
// lines themselves are the recording: `airlock sessions` reads them.) A session's recording
// ends after `idleMs` without operations (the guards do not announce closes here), and a later
// operation starts a new one.
import type { AuditSink } from "../audit/sink.ts";
import type { PolicyStore } from "../runtime/policy-store.ts";
import type { OperationRecord, Recorder } from "./recorder.ts";

export function recordingAuditSink(
  audit: AuditSink,
  recorder: Recorder,
  policies: PolicyStore,
  opts: { idleMs?: number } = {},
): AuditSink & { close(): void } {
  const idleMs = opts.idleMs ?? 60_000;
  const timers = new Map<string, NodeJS.Timeout>();
  const lastActive = new Map<string, number>();
  const arm = (session: string, delay: number) => {
    const timer = setTimeout(() => {
      const idle = Date.now() - (lastActive.get(session) ?? 0);
      if (idle < idleMs) return arm(session, idleMs - idle);
      timers.delete(session);
      lastActive.delete(session);
      void recorder.end(session);
    }, delay);
    timer.unref();
    timers.set(session, timer);
  };
  return {
    emit(event) {
      audit.emit(event);
      if (event.protocol !== "http" && event.protocol !== "postgres") return;
      const connection = policies.current().connections.get(event.connection);
      if (!connection || !recorder.recordsOperations(connection)) return;
      // (Built field by field, not with spreads: this runs once per proxied operation.)
      const record: OperationRecord = {
        connection,
        protocol: event.protocol,
        identity: event.identity,
        operation: event.operation as Record<string, unknown>,
        decision: event.decision,
        durationMs: event.durationMs,
      };
      if (event.upstream || event.rows !== undefined) {
        const outcome: Record<string, unknown> = {};
        if (event.upstream?.status !== undefined) outcome.status = event.upstream.status;
        if (event.upstream?.error !== undefined) outcome.error = event.upstream.error;
        if (event.rows !== undefined) outcome.rows = event.rows;
        record.outcome = outcome;
      }
      if (event.masked) record.masked = event.masked;
      recorder.operation(event.session, record);
      // One idle timer per session, re-armed when it fires early (not one per operation).
      lastActive.set(event.session, Date.now());
      if (!timers.has(event.session)) arm(event.session, idleMs);
    },
    close() {
      for (const t of timers.values()) clearTimeout(t);
      timers.clear();
      lastActive.clear();
    },
  };
}
