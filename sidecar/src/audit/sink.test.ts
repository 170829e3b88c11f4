import { Writable } from "node:stream";
import { pino } from "pino";
import { expect, it } from "vitest";
import { createAuditSink } from "./sink.ts";

/** A destination that keeps the lines written to it. */
function capture() {
  const lines: string[] = [];
  const out = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...chunk.toString().trim().split("\n"));
      cb();
    },
  });
  return { lines, out };
}

it("writes audit events as JSON lines marked audit:true even when the log level hides info", async () => {
  const { lines, out } = capture();
  const logger = pino({ level: "error" }, out);
  logger.info("diagnostic that must not appear");
  createAuditSink(logger).emit({
    session: "s1",
    connection: "db",
    protocol: "postgres",
    identity: { serviceAccount: "system:serviceaccount:ns:agent" },
    operation: { kind: "sql", statements: [{ kind: "select", tables: ["orders"] }] },
    decision: { action: "allow", policy: "ns/p", rule: "read", reason: "allowed by rule read" },
    durationMs: 1.5,
  });
  await new Promise((r) => setImmediate(r));
  expect(lines).toHaveLength(1);
  expect(JSON.parse(lines[0] as string)).toMatchObject({
    audit: true,
    v: 1,
    event: "operation",
    connection: "db",
    decision: { action: "allow", rule: "read" },
  });
});

it("writes only the audit schema's fields, without the diagnostic logger's redaction", async () => {
  const { lines, out } = capture();
  // The general logger redacts (e.g. `*.token`); the audit child does not need to, because it
  // writes schema fields only, and those carry no header, body or credential.
  const logger = pino(
    { level: "warn", base: undefined, redact: { paths: ["*.token"], censor: "[REDACTED]" } },
    out,
  );
  const event = {
    session: "s1",
    connection: "api",
    protocol: "http" as const,
    identity: { serviceAccount: "system:serviceaccount:ns:agent" },
    operation: { kind: "http" as const, method: "GET", path: "/v1/items", websocket: false },
    decision: { action: "allow" as const, policy: "ns/p", rule: "read", reason: "allowed by rule read" },
    masked: { token: 2 },
    upstream: { status: 200 },
    rows: 3,
    durationMs: 0.8,
    // Not part of the schema: must never reach the audit line.
    headers: { authorization: "Bearer agent-secret" },
  };
  createAuditSink(logger).emit(event);
  await new Promise((r) => setImmediate(r));
  expect(lines).toHaveLength(1);
  const line = lines[0] as string;
  expect(line).not.toContain("agent-secret");
  const parsed = JSON.parse(line);
  expect(parsed.headers).toBeUndefined();
  expect(parsed).toMatchObject({
    audit: true,
    masked: { token: 2 },
    upstream: { status: 200 },
    rows: 3,
    durationMs: 0.8,
  });
  expect(Object.keys(parsed)).toEqual([
    "level",
    "time",
    "audit",
    "v",
    "event",
    "session",
    "connection",
    "protocol",
    "identity",
    "operation",
    "decision",
    "masked",
    "upstream",
    "rows",
    "durationMs",
    "msg",
  ]);
});
