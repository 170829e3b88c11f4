import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { AUDIT_SCHEMA_VERSION, type AuditEvent } from "./events.ts";
import { auditLine } from "./line.ts";

// The line pino itself writes for an event (the format the audit sink used to delegate to pino):
// the hand-built serializer must stay byte-for-byte compatible with it.
function pinoLine(event: AuditEvent, time: string): string {
  let out = "";
  const sink = new Writable({
    write(chunk, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  });
  const logger = pino({ base: undefined, timestamp: () => time }, sink).child({
    audit: true,
    v: AUDIT_SCHEMA_VERSION,
  });
  const { session, connection, protocol, identity, operation, decision } = event;
  const line: Record<string, unknown> = {
    event: "operation",
    session,
    connection,
    protocol,
    identity,
    operation,
    decision,
  };
  if (event.approval !== undefined) line.approval = event.approval;
  if (event.masked !== undefined) line.masked = event.masked;
  if (event.upstream !== undefined) line.upstream = event.upstream;
  if (event.rows !== undefined) line.rows = event.rows;
  line.durationMs = event.durationMs;
  logger.info(line, `${protocol} ${connection} ${decision.action}`);
  return out;
}

const TIME = ',"time":"2026-11-22T11:02:03.123Z"';
const base: AuditEvent = {
  session: "p-1",
  connection: "orders-db",
  protocol: "postgres",
  identity: { serviceAccount: "system:serviceaccount:agents:a", pod: "a-1", namespace: "agents" },
  operation: { kind: "sql", statements: [{ kind: "select", tables: ["orders"], fingerprint: "abc" }] },
  decision: { action: "allow", policy: "agents/p", rule: "read", reason: "allowed by rule read" },
  durationMs: 0.25,
};

describe("auditLine", () => {
  const cases: [string, AuditEvent][] = [
    ["minimal", base],
    [
      "every optional field",
      {
        ...base,
        identity: { ...base.identity, user: "sam@example.com", groups: ["support", "oncall"] },
        approval: { request: "areq-1", approvers: ["lee@example.com"], grant: true },
        masked: { email: 2, column: 1 },
        upstream: { status: "SELECT 3" },
        rows: 3,
      },
    ],
    [
      "strings that need escaping",
      {
        ...base,
        session: 'quote " and \\ backslash',
        connection: "tab\there\nnewline \u2028 é",
        upstream: { error: "ECONNRESET" },
      },
    ],
    ["a non-finite duration", { ...base, durationMs: Number.NaN, rows: Number.POSITIVE_INFINITY }],
    [
      "an HTTP event",
      {
        ...base,
        protocol: "http",
        operation: { kind: "http", method: "GET", path: "/v1/items", websocket: false },
        upstream: { status: 200 },
      },
    ],
  ];
  for (const [name, event] of cases)
    it(`writes what pino writes: ${name}`, () => {
      expect(auditLine(event, TIME)).toBe(pinoLine(event, TIME));
    });

  it("reuses the text of frozen values and re-serializes mutable ones", () => {
    const identity = Object.freeze({ serviceAccount: "sa-1" });
    const first = auditLine({ ...base, identity }, TIME);
    expect(first).toContain('"identity":{"serviceAccount":"sa-1"}');
    const mutable: AuditEvent["identity"] = { serviceAccount: "sa-1" };
    auditLine({ ...base, identity: mutable }, TIME);
    mutable.serviceAccount = "sa-2";
    expect(auditLine({ ...base, identity: mutable }, TIME)).toContain('"identity":{"serviceAccount":"sa-2"}');
  });

  it("never writes top-level fields outside the schema", () => {
    const event = { ...base, headers: { authorization: "Bearer agent-secret" } } as AuditEvent;
    const line = auditLine(event, TIME);
    expect(line).not.toContain("agent-secret");
    expect(line.endsWith("}\n")).toBe(true);
  });
});

describe("auditLine numbers", () => {
  it("formats durations exactly as JSON.stringify does", () => {
    const values = [0, 1, 2, 0.001, 0.01, 0.1, 0.25, 1.5, 12.345, 999.999, 1000, 123456.789, 1073741.823];
    for (let i = 0; i < 5000; i++) values.push(Math.round(Math.random() * 1e9) / 1000, Math.random() * 100);
    values.push(1e-7, 1e21, -0.5, -3, Number.MAX_SAFE_INTEGER);
    for (const v of values) {
      const line = auditLine({ ...base, durationMs: v, rows: v }, TIME);
      expect(line).toContain(`"rows":${JSON.stringify(v)},"durationMs":${JSON.stringify(v)},`);
    }
  });
});
