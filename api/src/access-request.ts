// AccessRequest: a paused operation waiting for a human. The sidecar writes spec; approvers
// append to status through kubectl; a ValidatingAdmissionPolicy vouches for who they are.
import { PROTOCOLS } from "./agent-access-policy.ts";
import { condition } from "./common.ts";
import { duration, int, list, obj, oneOf, opt, type Static, str } from "./schema-kit.ts";

export const PHASES = ["Pending", "Approved", "Denied", "Expired"] as const;

const decision = (what: string, textField: "comment" | "reason") =>
  obj(
    {
      user: str({
        description: `Kubernetes user who ${what}; the API server guarantees it is the caller's own name.`,
        minLength: 1,
        maxLength: 256,
      }),
      time: str({
        description: `When the request was ${what === "approved" ? "approved" : "denied"}.`,
        format: "date-time",
      }),
      [textField]: opt(
        str({
          description: textField === "comment" ? "Approver's comment." : "Why it was denied.",
          maxLength: 1024,
        }),
      ),
    },
    { description: `One user's ${what === "approved" ? "approval" : "denial"}.` },
  );

export const AccessRequestSpec = obj(
  {
    policy: str({
      description: "AgentAccessPolicy whose rule asked for approval.",
      minLength: 1,
      maxLength: 253,
    }),
    rule: str({ description: "The requireApproval rule.", minLength: 1, maxLength: 63 }),
    connection: str({ description: "Connection the operation targets.", minLength: 1, maxLength: 63 }),
    requester: obj(
      {
        user: opt(
          str({
            description: "End user the agent acts for (from the verified OIDC token), if any.",
            maxLength: 256,
          }),
        ),
        groups: opt(
          list(str({ description: "A group.", maxLength: 256 }), {
            description: "End user's groups.",
            maxItems: 64,
            listType: "atomic",
          }),
        ),
        serviceAccount: str({
          description: "The agent pod's service account, system:serviceaccount:NS:NAME.",
          maxLength: 317,
        }),
        pod: str({ description: "The agent pod's name.", maxLength: 253 }),
        podUid: opt(str({ description: "The agent pod's UID.", maxLength: 64 })),
      },
      { description: "Who asked." },
    ),
    operation: obj(
      {
        protocol: oneOf(PROTOCOLS, { description: "Protocol of the operation." }),
        summary: str({
          description: "What the agent wants to do, with literals and secrets masked.",
          maxLength: 4096,
        }),
        fingerprint: opt(
          str({
            description: "Stable hash of the operation's shape, to group similar requests.",
            maxLength: 128,
          }),
        ),
      },
      { description: "The operation on hold." },
    ),
    reason: opt(
      str({
        description: "The agent's stated reason (X-Airlock-Reason, application_name or a comment).",
        maxLength: 1024,
      }),
    ),
    approvers: obj(
      {
        groups: opt(
          list(str({ description: "A Kubernetes group.", maxLength: 256 }), {
            description: "Groups whose members may decide.",
            maxItems: 16,
            listType: "atomic",
          }),
        ),
        users: opt(
          list(str({ description: "A Kubernetes user.", maxLength: 256 }), {
            description: "Users who may decide.",
            maxItems: 16,
            listType: "atomic",
          }),
        ),
      },
      {
        description:
          "Copied from the rule when the request is created; the admission policy checks deciders against it.",
      },
    ),
    minApprovals: int({ description: "Approvals from distinct users needed.", minimum: 1, maximum: 5 }),
    grantTtl: opt(duration({ description: "Approval opens a grant for this long.", max: "24h" })),
    grantCovers: opt(
      str({
        description:
          "What the grant lets through without asking again, while it is open: the rule's match as the policy writes it, for the same requester on the same connection. Shown to approvers next to the operation.",
        maxLength: 2048,
      }),
    ),
    expiresAt: str({ description: "When the request expires if nobody decides.", format: "date-time" }),
  },
  {
    description: "The paused operation; written once by the sidecar.",
    validations: [{ rule: "self == oldSelf", message: "spec is immutable" }],
  },
);

export const AccessRequestStatus = obj(
  {
    phase: opt(oneOf(PHASES, { description: "Pending until enough approvals, a denial, or expiry." })),
    approvals: opt(
      list(decision("approved", "comment"), {
        description: "Approvals, append-only.",
        maxItems: 16,
        listType: "atomic",
      }),
    ),
    denials: opt(
      list(decision("denied", "reason"), {
        description: "Denials, append-only.",
        maxItems: 16,
        listType: "atomic",
      }),
    ),
    grantExpiresAt: opt(
      str({ description: "End of the grant opened by the approval.", format: "date-time" }),
    ),
    conditions: opt(list(condition, { description: "Conditions.", maxItems: 8, mapKeys: ["type"] })),
  },
  { description: "Decisions on the request." },
);

export type AccessRequestSpec = Static<typeof AccessRequestSpec>;
export type AccessRequestStatus = Static<typeof AccessRequestStatus>;
export type Phase = (typeof PHASES)[number];
