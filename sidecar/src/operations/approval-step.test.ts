import { describe, expect, it } from "vitest";
import type { ApprovalGate } from "../approvals/gate.ts";
import type { Decision } from "../policy/types.ts";
import { approvalErrorCode, NO_APPROVAL_SERVICE, seekApproval } from "./approval-step.ts";

const decision: Decision = {
  action: "requireApproval",
  policy: "a/p",
  rule: "dba",
  reason: "needs approval by rule dba",
};
const ask = {
  connection: "db",
  protocol: "postgres" as const,
  subject: { serviceAccount: "sa", groups: [] },
  operation: { kind: "ssh-shell" as const },
  session: "s",
};
const signal = new AbortController().signal;
const quiet = { warn: () => undefined };
const gate = (answer: Awaited<ReturnType<ApprovalGate["request"]>> | Error): ApprovalGate => ({
  request: async () => {
    if (answer instanceof Error) throw answer;
    return answer;
  },
});

describe("approval step: one wording for every protocol", () => {
  it("no gate: fails closed, says so, with a hint", async () => {
    const r = await seekApproval({ gate: undefined, ...quiet }, decision, ask, signal);
    expect(r).toMatchObject({ approved: false, status: "unconfigured", hint: expect.any(String) });
    expect(!r.approved && r.message).toBe(`rule dba: ${NO_APPROVAL_SERVICE}`);
  });

  it("approved: the approval as audited", async () => {
    const r = await seekApproval(
      { gate: gate({ approved: true, request: "areq-1", approvers: ["dana"], grant: true }), ...quiet },
      decision,
      ask,
      signal,
    );
    expect(r).toEqual({ approved: true, approval: { request: "areq-1", approvers: ["dana"], grant: true } });
  });

  it("denied / pending / expired / unavailable: status, request and the gate's note", async () => {
    const denied = await seekApproval(
      {
        gate: gate({ approved: false, request: "areq-2", status: "denied", message: "not today" }),
        ...quiet,
      },
      decision,
      ask,
      signal,
    );
    expect(!denied.approved && denied.message).toBe(
      "approval denied for rule dba (request areq-2): not today",
    );
    const pending = await seekApproval(
      { gate: gate({ approved: false, request: "areq-3", status: "pending" }), ...quiet },
      decision,
      ask,
      signal,
    );
    expect(!pending.approved && pending.message).toBe(
      "approval pending for rule dba (request areq-3): retry once it is approved",
    );
    expect(approvalErrorCode("expired")).toBe("approval_expired");
    expect(approvalErrorCode("unconfigured")).toBe("approval_unavailable");
  });

  it("a gate that throws is a refusal (failed), never an approval", async () => {
    const warned: string[] = [];
    const r = await seekApproval(
      { gate: gate(new Error("etcd down")), warn: (m) => void warned.push(m) },
      decision,
      ask,
      signal,
    );
    expect(r).toMatchObject({ approved: false, status: "failed" });
    expect(!r.approved && r.message).not.toMatch(/etcd/);
    expect(warned).toEqual(["approval service failed"]);
  });
});
