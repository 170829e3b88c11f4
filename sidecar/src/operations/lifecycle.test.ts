import type { Logger } from "pino";
import { describe, expect, it } from "vitest";
import { createMemoryAuditSink } from "../audit/sink.ts";
import { createMetrics } from "../telemetry/metrics.ts";
import { type AuditFailure, OperationLog } from "./lifecycle.ts";

const quiet = { error() {}, warn() {}, info() {} } as unknown as Logger;

function log(opts: { throwing?: boolean } = {}) {
  const sink = createMemoryAuditSink();
  const failures: AuditFailure[] = [];
  const metrics = createMetrics({ defaultMetrics: false });
  const audit = opts.throwing
    ? {
        emit() {
          throw new Error("disk full");
        },
      }
    : sink;
  const l = new OperationLog(
    { audit, metrics, logger: quiet },
    {
      session: "s1",
      connection: "db",
      protocol: "postgres",
      identity: { serviceAccount: "sa" },
      failClosed: (e) => failures.push(e),
    },
  );
  return { l, sink, failures, metrics };
}

describe("operation lifecycle", () => {
  it("finish emits exactly one event; a second finish is a bug and throws", () => {
    const { l, sink } = log();
    const op = l
      .begin({ kind: "ssh-shell" })
      .decide({ action: "allow", policy: "a/p", rule: "r", reason: "ok" });
    op.addMasked({ email: 2 });
    op.addMasked({ email: 1, creditCard: 0 });
    op.upstream = { status: 0 };
    op.finish();
    expect(() => op.finish()).toThrow(/finished twice/);
    expect(sink.events).toEqual([
      expect.objectContaining({
        session: "s1",
        connection: "db",
        protocol: "postgres",
        decision: { action: "allow", policy: "a/p", rule: "r", reason: "ok" },
        masked: { email: 3 },
        upstream: { status: 0 },
      }),
    ]);
  });

  it("end() ends an open operation once, keeping an outcome already known", () => {
    const { l, sink } = log();
    const a = l.begin({ kind: "ssh-shell" });
    expect(a.end("agent_disconnected")).toBe(true);
    expect(a.end("later")).toBe(false);
    const b = l.begin({ kind: "ssh-shell" });
    b.upstream = { status: 200 };
    b.end("agent_disconnected");
    expect(sink.events.map((e) => e.upstream)).toEqual([{ error: "agent_disconnected" }, { status: 200 }]);
  });

  it("close() ends every operation still open: none is left without its event", () => {
    const { l, sink } = log();
    const done = l.begin({ kind: "ssh-sftp" });
    done.finish();
    l.begin({ kind: "ssh-shell" });
    l.begin({ kind: "ssh-exec", command: "ls" });
    expect(l.open).toBe(2);
    l.close("session_closed");
    expect(l.open).toBe(0);
    expect(sink.events).toHaveLength(3);
    expect(sink.events.slice(1).map((e) => e.upstream)).toEqual([
      { error: "session_closed" },
      { error: "session_closed" },
    ]);
  });

  it("decisions are counted with their events, by action", async () => {
    const { l, metrics } = log();
    l.begin({ kind: "ssh-shell" }).decide({ action: "deny", reason: "no" }).finish();
    l.begin({ kind: "ssh-shell" }).decide({ action: "requireApproval", reason: "ask" }).finish();
    l.begin({ kind: "ssh-shell" });
    const text = await metrics.registry.getSingleMetricAsString("airlock_operations_total");
    expect(text).toMatch(/decision="deny"\} 1/);
    expect(text).toMatch(/decision="requireApproval"\} 1/);
    expect(text).not.toMatch(/decision="allow"\} [1-9]/);
  });

  it("a sink that throws fails the session closed (the agent's connection), never silently", () => {
    const { l, failures } = log({ throwing: true });
    l.begin({ kind: "ssh-shell" }).finish();
    expect(failures).toHaveLength(1);
    expect(failures[0]?.message).toMatch(/audit record could not be written: disk full/);
  });

  it("the same decision object is audited as one frozen shape (serialized once per line cache)", () => {
    const { l, sink } = log();
    const d = { action: "allow" as const, reason: "ok" };
    l.begin({ kind: "ssh-shell" }).decide(d).finish();
    l.begin({ kind: "ssh-shell" }).decide(d).finish();
    expect(sink.events[0]?.decision).toBe(sink.events[1]?.decision);
    expect(Object.isFrozen(sink.events[0]?.decision)).toBe(true);
  });
});
