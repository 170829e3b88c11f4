// Who is asking: the pod's service account, plus the end user when the request carries a valid
// `X-Airlock-Identity` token for the connection's OIDC issuer. The token is verified here and never
// logged or echoed; the header itself is removed from the upstream request by headers.ts.
import type { IncomingHttpHeaders } from "node:http";
import type { AuditIdentity } from "../../audit/events.ts";
import { extractIdentityToken, IDENTITY_HEADER, IdentityError } from "../../identity/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { Subject } from "../../policy/types.ts";
import { type SidecarContext, subjectFor } from "../../runtime/context.ts";

export interface ResolvedIdentity {
  subject: Subject;
  audit: AuditIdentity;
}

// The pod's audit identity, one frozen object per workload: every request without an end user
// carries it, and the audit line serializes a frozen value once (audit/line.ts).
const workloadIdentities = new WeakMap<SidecarContext["workload"], AuditIdentity>();

export function workloadAuditIdentity(ctx: SidecarContext): AuditIdentity {
  const w = ctx.workload;
  let identity = workloadIdentities.get(w);
  if (identity === undefined) {
    identity = Object.freeze({ serviceAccount: w.subject, pod: w.podName, namespace: w.namespace });
    workloadIdentities.set(w, identity);
  }
  return identity;
}

/** Rejects with IdentityError only. */
export async function resolveIdentity(
  ctx: SidecarContext,
  connection: CompiledConnection,
  headers: IncomingHttpHeaders,
): Promise<ResolvedIdentity> {
  const token = extractIdentityToken(headers[IDENTITY_HEADER]);
  if (token === undefined) {
    return { subject: subjectFor(ctx.workload), audit: workloadAuditIdentity(ctx) };
  }
  const verifier = ctx.verifierFor(connection);
  if (!verifier) {
    // A token nobody can verify is refused rather than ignored: the agent believes it acts for
    // someone, and the policy cannot say for whom.
    throw new IdentityError(
      "invalid_config",
      "this connection's policy has no identity.oidc issuer to verify X-Airlock-Identity against",
    );
  }
  const user = await verifier.verify(token);
  return {
    subject: subjectFor(ctx.workload, user),
    audit: { ...workloadAuditIdentity(ctx), user: user.user, groups: user.groups },
  };
}

/** HTTP status for an identity failure: the IdP being down is not the agent's fault. */
export function identityStatus(err: IdentityError): number {
  return err.code === "jwks_unavailable" ? 503 : 401;
}
