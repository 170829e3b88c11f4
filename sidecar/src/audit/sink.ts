// Writes audit events as pino JSON lines marked `"audit": true`. `emit` is synchronous from the
// caller's point of view: handlers call it before releasing a response, so an operation is never
// visible to the agent without its audit record having been written to stdout first (a SIGKILL
// right after the response loses no line; test/faults/crash.test.ts).
//
// Hot path: one line per operation. Lines are serialized by `auditLine` (no generic walk, no
// redaction pass) and written straight to the logger's own destination, so audit and diagnostic
// lines share one stream in order. Redaction is not needed here: lines carry the AuditEvent
// schema's fields only — picked one by one, never spread — and that schema carries shapes
// (service account, method, normalized path, rule, detector names and counts, status codes),
// never headers, bodies, query strings or credentials. The general logger keeps its redaction as
// the second line of defence for diagnostics.
import { type DestinationStream, type Logger, pino } from "pino";
import type { LineOutput } from "../telemetry/line-output.ts";
import { isoTime } from "../telemetry/logger.ts";
import type { AuditEvent } from "./events.ts";
import { auditLine } from "./line.ts";

export interface AuditSink {
  emit(event: AuditEvent): void;
}

/** Audit records are not diagnostics: they are written whatever the log level is set to. */
export function createAuditSink(logger: Logger): AuditSink {
  const stream = (logger as unknown as Record<symbol, DestinationStream & Partial<LineOutput>>)[
    pino.symbols.streamSym
  ];
  if (!stream) throw new Error("audit sink: the logger has no destination stream");
  // The sidecar's stdout writes an audit line at once, before the response is released; another
  // destination (tests) takes it as any line.
  const writeNow = stream.writeNow?.bind(stream);
  return {
    emit(event) {
      const line = auditLine(event, isoTime());
      if (writeNow) writeNow(line);
      else stream.write(line);
    },
  };
}

/** For tests and the CLI: collects events in memory. */
export function createMemoryAuditSink(): AuditSink & { events: AuditEvent[] } {
  const events: AuditEvent[] = [];
  return { events, emit: (e) => void events.push(e) };
}
