// AccessRequest objects as the sidecar builds and reads them: labels, names, the keys that find an
// existing request (async retries, restarts) or grant, and the assessment of status.approvals /
// status.denials that decides whether an operation may pass. Pure functions; no I/O.
import { createHash, createHmac, randomBytes } from "node:crypto";
import type { AccessRequest, AccessRequestSpec, AccessRequestStatus } from "../../../api/src/index.ts";
import { API_VERSION } from "../../../api/src/index.ts";

export const LABELS = {
  managedBy: "app.kubernetes.io/managed-by",
  pod: "airlock.dev/pod",
  connection: "airlock.dev/connection",
  rule: "airlock.dev/rule",
  policy: "airlock.dev/policy",
  protocol: "airlock.dev/protocol",
} as const;
export const MANAGED_BY = "airlock-sidecar";

/** Condition the sidecar sets when a single-use approval has let its operation through. */
export const CONSUMED_CONDITION = "Consumed";

const SA_PREFIX = "system:serviceaccount:";

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

/** A valid label value for `value`: itself when it is one, else a stable hash. */
export function labelValue(value: string): string {
  if (value.length <= 63 && /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(value)) return value;
  return `h-${sha(value).slice(0, 40)}`;
}

/** `delete-needs-dba-7k2p9qaz`: the rule's name and a random suffix, a valid object name. */
export function requestName(rule: string): string {
  const base = rule
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40);
  const suffix = BigInt(`0x${randomBytes(6).toString("hex")}`)
    .toString(36)
    .padStart(8, "0")
    .slice(-8);
  return `${base || "request"}-${suffix}`;
}

export function podLabel(podName: string): string {
  return labelValue(podName);
}

export interface Requester {
  serviceAccount: string;
  user?: string;
}

/** Who a grant or a request belongs to: the pod's service account and the end user, if any. */
export function requesterKey(r: Requester): string {
  return `${r.serviceAccount}|${r.user ?? ""}`;
}

/** Grants are per requester, policy, rule and connection. */
export function grantKey(
  spec: Pick<AccessRequestSpec, "policy" | "rule" | "connection" | "requester">,
): string {
  return `${requesterKey(spec.requester)}#${spec.policy}#${spec.rule}#${spec.connection}`;
}

/** A request is "the same" when requester, policy, rule, connection and operation shape match. */
export function requestKey(spec: AccessRequestSpec): string {
  return `${grantKey(spec)}#${spec.operation.protocol}#${spec.operation.fingerprint ?? spec.operation.summary}`;
}

/**
 * Stable operation fingerprint: a keyed hash (the install's hash key, so it survives restarts) of
 * the statement fingerprints when known, else of the protocol and the summary *before* masking, so
 * that two operations that only differ in a masked value are never the same request, while the
 * fingerprint reveals nothing about the value.
 */
export function operationFingerprint(
  key: Buffer,
  protocol: string,
  summary: string,
  parts?: readonly string[],
): string {
  return createHmac("sha256", key)
    .update(`${protocol}\n${parts?.length ? parts.join("\n") : summary}`)
    .digest("hex")
    .slice(0, 32);
}

export function labelsFor(spec: AccessRequestSpec): Record<string, string> {
  const policyName = spec.policy.includes("/")
    ? spec.policy.slice(spec.policy.indexOf("/") + 1)
    : spec.policy;
  return {
    [LABELS.managedBy]: MANAGED_BY,
    [LABELS.pod]: podLabel(spec.requester.pod),
    [LABELS.connection]: labelValue(spec.connection),
    [LABELS.rule]: labelValue(spec.rule),
    [LABELS.policy]: labelValue(policyName),
    [LABELS.protocol]: spec.operation.protocol,
  };
}

export function newAccessRequest(
  name: string,
  namespace: string,
  spec: AccessRequestSpec,
  owner?: { podUid: string },
): AccessRequest {
  return {
    apiVersion: API_VERSION,
    kind: "AccessRequest",
    metadata: {
      name,
      namespace,
      labels: labelsFor(spec),
      ...(owner
        ? {
            ownerReferences: [
              {
                apiVersion: "v1",
                kind: "Pod",
                name: spec.requester.pod,
                uid: owner.podUid,
                controller: false,
              },
            ],
          }
        : {}),
    },
    spec,
  };
}

export type Assessment =
  | { outcome: "pending"; approvers: string[] }
  | { outcome: "approved"; approvers: string[] }
  | { outcome: "denied"; approvers: string[]; deniedBy: string; reason?: string }
  | { outcome: "expired"; approvers: string[] };

/**
 * What status.approvals and status.denials add up to. Entries are trusted because the admission
 * policy made the API server check them (own name, approver, not the requester, append-only); the
 * sidecar still counts distinct users only, never the requester, never a service account, and,
 * when the rule names approvers by user only, only those users. Group membership can only be
 * checked by the API server. `phase` is read only for the terminal phases the sidecar itself writes
 * (Expired, Denied): a phase never approves anything.
 */
export function assess(obj: Pick<AccessRequest, "spec" | "status">): Assessment {
  const spec = obj.spec;
  const status: AccessRequestStatus = obj.status ?? {};
  const requester = spec.requester.user;
  const onlyUsers = !spec.approvers.groups?.length;
  const allowedUsers = new Set(spec.approvers.users ?? []);
  const eligible = (user: string | undefined): user is string =>
    typeof user === "string" &&
    user.length > 0 &&
    !user.startsWith(SA_PREFIX) &&
    user !== spec.requester.serviceAccount &&
    (!onlyUsers || allowedUsers.has(user));

  const approvers: string[] = [];
  for (const a of status.approvals ?? []) {
    if (!eligible(a.user) || a.user === requester) continue;
    if (!approvers.includes(a.user)) approvers.push(a.user);
  }
  const denial = (status.denials ?? []).find((d) => eligible(d.user));
  if (denial?.user)
    return {
      outcome: "denied",
      approvers,
      deniedBy: denial.user,
      ...(denial.reason ? { reason: denial.reason } : {}),
    };
  if (status.phase === "Denied") return { outcome: "denied", approvers, deniedBy: "(unknown)" };
  if (approvers.length >= spec.minApprovals) return { outcome: "approved", approvers };
  if (status.phase === "Expired") return { outcome: "expired", approvers };
  return { outcome: "pending", approvers };
}

export function isConsumed(obj: Pick<AccessRequest, "status">): boolean {
  return (obj.status?.conditions ?? []).some((c) => c.type === CONSUMED_CONDITION && c.status === "True");
}
