// The seam to just-in-time approvals: the shared, protocol-agnostic ApprovalGate
// (sidecar/src/approvals/gate.ts). An exec, shell, SFTP or forwarding request whose decision is
// requireApproval waits on the gate; without one it is refused with a clear message (fail closed).
export type { ApprovalGate, ApprovalInput, ApprovalOutcome } from "../../approvals/gate.ts";
