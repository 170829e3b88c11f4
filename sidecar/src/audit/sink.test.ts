import { Writable } from "node:stream";
import { pino } from "pino";
import { expect, it } from "vitest";
import { createAuditSink } from "./sink.ts";

it("writes audit events as JSON lines marked audit:true even when the log level hides info", async () => {
  const lines: string[] = [];
  const out = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...chunk.toString().trim().split("\n"));
      cb();
    },
  });
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
