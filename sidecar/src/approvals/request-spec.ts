// What the approver sees: the AccessRequest spec built from a guard's ApprovalInput and the rule's
// approval settings. Everything the agent wrote passes cleanText before it leaves the sidecar, and
// every field is bounded to what the CRD accepts.
import { randomBytes } from "node:crypto";
import type { AccessRequestSpec } from "../../../api/src/index.ts";
import type { WorkloadIdentity } from "../identity/index.ts";
import { createMasker, type Masker } from "../masking/index.ts";
import {
  type ApprovalInput,
  type ApprovalSettings,
  operationFingerprintParts,
  summarizeOperation,
} from "./gate.ts";
import { operationFingerprint } from "./request.ts";

/** The masker for approval text: every detector, redacting. */
export function approvalTextMasker(): Masker {
  return createMasker({
    rules: [{ name: "approval-text", detectors: ["all"], strategy: "redact" }],
    hashKey: randomBytes(32),
  });
}

// Text from the agent leaves the sidecar only through this: no control characters (line breaks
// kept where they carry meaning, e.g. a SQL `--` comment line), secrets and personal data redacted
// by the masking detectors, bounded length.
// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]+/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: as above, keeping line feeds
const CONTROL_BUT_LF = /[\u0000-\u0009\u000b-\u001f\u007f]+/g;

export function cleanText(
  masker: Masker,
  text: string,
  max: number,
  opts: { multiline?: boolean } = {},
): string {
  const flat = opts.multiline
    ? text.replace(/\r\n?/g, "\n").replace(CONTROL_BUT_LF, " ").trim()
    : text.replace(CONTROL, " ").trim();
  const masked = masker.maskText(flat).text;
  return masked.length > max ? `${masked.slice(0, max - 1)}…` : masked;
}

/** A duration in the largest unit that divides it, as a rule would write it ("5m", "90s"). */
export function durationText(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

export interface SpecContext {
  masker: Masker;
  /** Key for operation fingerprints (stable across restarts when it is the install's hash key). */
  fingerprintKey: Buffer;
  workload: WorkloadIdentity;
  podUid?: string | undefined;
  now: () => number;
}

export function buildSpec(input: ApprovalInput, s: ApprovalSettings, ctx: SpecContext): AccessRequestSpec {
  const d = input.decision;
  const rawSummary = input.summary ?? summarizeOperation(input.operation);
  const summary = cleanText(ctx.masker, rawSummary, 4096, { multiline: true });
  // A keyed hash of the unmasked summary (nothing readable leaves): redaction could make two
  // distinct operations look the same.
  const fingerprint =
    input.fingerprint?.slice(0, 128) ??
    operationFingerprint(
      ctx.fingerprintKey,
      input.protocol,
      rawSummary,
      operationFingerprintParts(input.operation),
    );
  const reason = input.reason ? cleanText(ctx.masker, input.reason, 1024) : "";
  const subject = input.subject;
  return {
    policy: (d.policy ?? "(unknown)").slice(0, 253),
    rule: (d.rule ?? "unknown").slice(0, 63),
    connection: input.connection.slice(0, 63),
    requester: {
      ...(subject.user ? { user: subject.user, groups: subject.groups.slice(0, 64) } : {}),
      serviceAccount: subject.serviceAccount,
      pod: ctx.workload.podName,
      ...(ctx.podUid ? { podUid: ctx.podUid } : {}),
    },
    operation: { protocol: input.protocol, summary, fingerprint },
    ...(reason ? { reason } : {}),
    approvers: {
      ...(s.approvers.groups.length ? { groups: s.approvers.groups } : {}),
      ...(s.approvers.users.length ? { users: s.approvers.users } : {}),
    },
    minApprovals: s.minApprovals,
    ...(s.grantTtl ? { grantTtl: s.grantTtl } : {}),
    ...(s.grantTtl && d.grantCovers ? { grantCovers: d.grantCovers.slice(0, 2048) } : {}),
    expiresAt: new Date(ctx.now() + s.timeoutMs).toISOString(),
  };
}

/** Who may decide a request, for the agent: "2 approvals from group dba or user ann". */
export function who(spec: AccessRequestSpec): string {
  const parts = [
    ...(spec.approvers.groups ?? []).map((g) => `group ${g}`),
    ...(spec.approvers.users ?? []).map((u) => `user ${u}`),
  ];
  return `${spec.minApprovals} approval${spec.minApprovals > 1 ? "s" : ""} from ${parts.join(" or ")}`;
}
