import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../audit/events.ts";
import { createMemoryAuditSink } from "../audit/sink.ts";
import type { CompiledConnection } from "../policy/compile.ts";
import type { PolicyStore } from "../runtime/policy-store.ts";
import { recordingAuditSink } from "./audit-tee.ts";
import type { Recorder } from "./recorder.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The tee over a recorder that notes its calls (the tee's own logic is under test here). */
function setup(recordsOperations: boolean, idleMs?: number) {
  const calls: string[] = [];
  const recorder = {
    recordsOperations: () => recordsOperations,
    operation: (session: string) => void calls.push(`op ${session}`),
    end: async (session: string) => void calls.push(`end ${session}`),
  } as unknown as Recorder;
  const connection = { policy: "agents/p", spec: { name: "db" } } as unknown as CompiledConnection;
  const policies = {
    current: () => ({ connections: new Map([["db", connection]]) }),
  } as unknown as PolicyStore;
  const audit = createMemoryAuditSink();
  const tee = recordingAuditSink(audit, recorder, policies, idleMs === undefined ? {} : { idleMs });
  return { calls, audit, tee };
}

const event = (protocol: AuditEvent["protocol"]): AuditEvent => ({
  session: "s1",
  connection: "db",
  protocol,
  identity: { serviceAccount: "sa" },
  operation: { kind: "sql", statements: [] },
  decision: { action: "allow", policy: "agents/p", rule: "r", reason: "" },
  durationMs: 1,
});

describe("recordingAuditSink", () => {
  it("passes events on, records SQL/HTTP operations, and ends a session only after it went idle", async () => {
    const { calls, audit, tee } = setup(true, 60);
    tee.emit(event("postgres"));
    await sleep(40);
    tee.emit(event("postgres"));
    tee.emit(event("ssh")); // not recorded from audit events
    await sleep(40); // 80 ms after the first, 40 after the last: still open
    expect(calls).toEqual(["op s1", "op s1"]);
    await sleep(60);
    expect(calls).toEqual(["op s1", "op s1", "end s1"]);
    expect(audit.events).toHaveLength(3);
    tee.close();
  });

  it("leaves operations to the audit stream when the recording is not a file", () => {
    const { calls, audit, tee } = setup(false);
    tee.emit(event("postgres"));
    expect(audit.events).toHaveLength(1);
    expect(calls).toEqual([]);
    tee.close();
  });
});
