import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ApprovalWaitCanceled } from "../../approvals/gate.ts";
import { createMasker } from "../../masking/index.ts";
import { MAX_JSON_DEPTH } from "../../masking/masker.ts";
import { approvalSummary, argumentsDigest, createMcpWaits, waitScope } from "./approval.ts";
import { createMcpSessions } from "./sessions.ts";

const key = randomBytes(32);
const call = { kind: "mcp", method: "tools/call", tool: "run" } as const;
const sam = { serviceAccount: "system:serviceaccount:a:agent", user: "sam", groups: [] };
const ann = { serviceAccount: "system:serviceaccount:a:agent", user: "ann", groups: [] };

describe("approvalSummary", () => {
  it("shows the tool and the arguments as request masking leaves them, with a keyed digest", () => {
    const masker = createMasker({
      rules: [{ name: "acct", fields: ["$..account"], strategy: "redact" }],
      hashKey: key,
    });
    const s = approvalSummary(call, { account: "acct-1", n: 2 }, masker, key);
    expect(s).toBe(
      `tools/call run {"account":"[REDACTED]","n":2} (arguments digest ${argumentsDigest(key, { account: "acct-1", n: 2 })})`,
    );
    expect(s).not.toContain("acct-1");
  });
  it("digests arguments independently of key order, and differently for other values or keys", () => {
    expect(argumentsDigest(key, { a: 1, b: [1, { c: 2, d: 3 }] })).toBe(
      argumentsDigest(key, { b: [1, { d: 3, c: 2 }], a: 1 }),
    );
    expect(argumentsDigest(key, { a: 1 })).not.toBe(argumentsDigest(key, { a: 2 }));
    expect(argumentsDigest(key, { a: 1 })).not.toBe(argumentsDigest(randomBytes(32), { a: 1 }));
  });
  it("bounds long arguments (the digest still covers them all) and names other methods only", () => {
    const s = approvalSummary(call, { text: "x".repeat(5000) }, undefined, key);
    expect(s.length).toBeLessThan(1100);
    expect(
      approvalSummary(
        { kind: "mcp", method: "resources/read", resource: "file:///a" },
        undefined,
        undefined,
        key,
      ),
    ).toBe("resources/read file:///a");
  });
});

describe("createMcpWaits", () => {
  it("cancels only the named request of the same sender, with a client-cancel reason", () => {
    const waits = createMcpWaits();
    const mine = waitScope("ops", "s1", sam);
    const a = waits.watch(mine, 1);
    const b = waits.watch(mine, 2);
    const other = waits.watch(waitScope("ops", "s1", ann), 1);
    expect(waits.cancel(mine, [1, "1"])).toBe(1);
    expect(a.signal.aborted).toBe(true);
    expect(a.signal.reason).toBeInstanceOf(ApprovalWaitCanceled);
    expect(b.signal.aborted).toBe(false);
    expect(other.signal.aborted).toBe(false);
    b.release();
    expect(waits.cancel(mine, [2])).toBe(0);
  });
});

describe("createMcpSessions", () => {
  it("binds an id to the first subject, per connection, and forgets the oldest past the cap", () => {
    const s = createMcpSessions(key, 2);
    expect(s.claim("ops", "id1", sam)).toBe(true);
    expect(s.claim("ops", "id1", sam)).toBe(true);
    expect(s.claim("ops", "id1", ann)).toBe(false);
    expect(s.claim("other", "id1", ann)).toBe(true);
    expect(s.claim("ops", "id2", ann)).toBe(true);
    // Past the cap of 2 the oldest binding (ops/id1) is forgotten.
    expect(s.claim("ops", "id1", ann)).toBe(true);
    expect(s.digest("id1")).toMatch(/^[0-9a-f]{16}$/);
    expect(s.digest("id1")).not.toContain("id1");
  });
});

describe("approvalSummary on hostile arguments", () => {
  it("throws (the guard then refuses) when the arguments are nested too deeply to mask", () => {
    const masker = createMasker({
      rules: [{ name: "e", detectors: ["email"], strategy: "redact" }],
      hashKey: key,
    });
    let deep: unknown = "x";
    for (let i = 0; i <= MAX_JSON_DEPTH; i++) deep = { d: deep };
    expect(() => approvalSummary(call, deep, masker, key)).toThrow();
  });
});
