import { describe, expect, it } from "vitest";
import type { AccessRequest, AccessRequestSpec, AccessRequestStatus } from "../../../api/src/index.ts";
import { approvalSettings, summarizeOperation } from "./gate.ts";
import { assess, grantKey, labelsFor, labelValue, requestKey, requestName } from "./request.ts";

const spec = (over: Partial<AccessRequestSpec> = {}): AccessRequestSpec => ({
  policy: "agents/p",
  rule: "delete-needs-dba",
  connection: "db",
  requester: {
    user: "sam",
    groups: ["support"],
    serviceAccount: "system:serviceaccount:agents:agent",
    pod: "agent-0",
  },
  operation: { protocol: "postgres", summary: "DELETE FROM orders WHERE id = $1", fingerprint: "f1" },
  approvers: { groups: ["dba"] },
  minApprovals: 1,
  expiresAt: "2030-01-01T00:00:00Z",
  ...over,
});
const obj = (s: AccessRequestSpec, status?: AccessRequestStatus): Pick<AccessRequest, "spec" | "status"> => ({
  spec: s,
  ...(status ? { status } : {}),
});
const at = "2025-01-01T00:00:00Z";

describe("assess", () => {
  it("is pending without decisions, and a phase alone never approves", () => {
    expect(assess(obj(spec())).outcome).toBe("pending");
    expect(assess(obj(spec(), { phase: "Approved" })).outcome).toBe("pending");
  });

  it("approves at minApprovals distinct users", () => {
    const s = spec({ minApprovals: 2 });
    expect(assess(obj(s, { approvals: [{ user: "ann", time: at }] })).outcome).toBe("pending");
    const twice = assess(
      obj(s, {
        approvals: [
          { user: "ann", time: at },
          { user: "ann", time: at },
        ],
      }),
    );
    expect(twice).toEqual({ outcome: "pending", approvers: ["ann"] });
    const two = assess(
      obj(s, {
        approvals: [
          { user: "ann", time: at },
          { user: "bob", time: at },
        ],
      }),
    );
    expect(two).toEqual({ outcome: "approved", approvers: ["ann", "bob"] });
  });

  it("never counts the requester or a service account", () => {
    const a = assess(
      obj(spec(), {
        approvals: [
          { user: "sam", time: at },
          { user: "system:serviceaccount:agents:agent", time: at },
          { user: "system:serviceaccount:other:sa", time: at },
        ],
      }),
    );
    expect(a).toEqual({ outcome: "pending", approvers: [] });
  });

  it("checks users when the rule names approvers by user only", () => {
    const s = spec({ approvers: { users: ["ann"] } });
    expect(assess(obj(s, { approvals: [{ user: "eve", time: at }] })).outcome).toBe("pending");
    expect(assess(obj(s, { approvals: [{ user: "ann", time: at }] })).outcome).toBe("approved");
  });

  it("denies on any eligible denial, before counting approvals", () => {
    const a = assess(
      obj(spec(), {
        approvals: [{ user: "ann", time: at }],
        denials: [{ user: "bob", time: at, reason: "no" }],
      }),
    );
    expect(a).toMatchObject({ outcome: "denied", deniedBy: "bob", reason: "no" });
    expect(assess(obj(spec(), { phase: "Denied" })).outcome).toBe("denied");
  });

  it("reads Expired as expired unless approvals were enough", () => {
    expect(assess(obj(spec(), { phase: "Expired" })).outcome).toBe("expired");
  });
});

describe("names, labels and keys", () => {
  it("makes valid names and label values", () => {
    expect(requestName("delete-needs-dba")).toMatch(/^delete-needs-dba-[0-9a-z]{8}$/);
    expect(requestName("Weird_Rule!!")).toMatch(/^weird-rule-[0-9a-z]{8}$/);
    expect(labelValue("agent-0")).toBe("agent-0");
    expect(labelValue("x".repeat(80))).toMatch(/^h-[0-9a-f]{40}$/);
    expect(labelValue("a/b")).toMatch(/^h-/);
    expect(labelsFor(spec())).toMatchObject({
      "airlock.dev/pod": "agent-0",
      "airlock.dev/policy": "p",
      "airlock.dev/rule": "delete-needs-dba",
      "airlock.dev/connection": "db",
      "app.kubernetes.io/managed-by": "airlock-sidecar",
    });
  });

  it("keys grants by requester, policy, rule and connection, and requests also by operation", () => {
    const a = spec();
    const otherOp = spec({ operation: { ...a.operation, fingerprint: "f2" } });
    const otherUser = spec({ requester: { ...a.requester, user: "kim" } });
    expect(grantKey(a)).toBe(grantKey(otherOp));
    expect(requestKey(a)).not.toBe(requestKey(otherOp));
    expect(grantKey(a)).not.toBe(grantKey(otherUser));
  });
});

describe("approval settings and summaries", () => {
  it("applies the CRD defaults", () => {
    const s = approvalSettings({
      action: "requireApproval",
      reason: "r",
      rule: "r",
      approval: { approvers: { groups: ["dba"] } },
    });
    expect(s).toEqual({
      approvers: { groups: ["dba"], users: [] },
      minApprovals: 1,
      timeoutMs: 300_000,
      mode: "wait",
    });
    const t = approvalSettings({
      action: "requireApproval",
      reason: "r",
      approval: {
        approvers: { users: ["ann"] },
        minApprovals: 2,
        grantTtl: "10m",
        timeout: "30s",
        mode: "async",
      },
    });
    expect(t).toMatchObject({
      minApprovals: 2,
      grantTtl: "10m",
      grantTtlMs: 600_000,
      timeoutMs: 30_000,
      mode: "async",
    });
    expect(() => approvalSettings({ action: "requireApproval", reason: "r" })).toThrow(/approval/);
  });

  it("summarizes operations without values", () => {
    expect(summarizeOperation({ kind: "http", method: "POST", path: "/orders", websocket: false })).toBe(
      "POST /orders",
    );
    expect(
      summarizeOperation({
        kind: "sql",
        statements: [{ kind: "delete", tables: ["orders"], fingerprint: "x" }],
      }),
    ).toBe("DELETE orders");
    expect(summarizeOperation({ kind: "ssh-exec", command: "systemctl restart api" })).toBe(
      "systemctl restart api",
    );
  });
});
