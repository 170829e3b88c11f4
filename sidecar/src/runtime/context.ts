// What every protocol handler gets: the policy in force, identity, secrets, masking, audit and
// metrics. Handlers depend on this interface, not on how the sidecar was started (Kubernetes or
// standalone), so the same handler code runs in both.
import type { Logger } from "pino";
import type { AuditSink } from "../audit/sink.ts";
import type { CredentialSources } from "../credentials/index.ts";
import type { OidcVerifier, WorkloadIdentity } from "../identity/index.ts";
import type { CompiledConnection } from "../policy/compile.ts";
import type { Subject } from "../policy/types.ts";
import type { Metrics } from "../telemetry/metrics.ts";
import type { PolicyStore } from "./policy-store.ts";
import type { SecretStore } from "./secrets.ts";

export type MaskDirection = "request" | "response";

export interface SidecarContext {
  readonly logger: Logger;
  readonly audit: AuditSink;
  readonly metrics: Metrics;
  readonly workload: WorkloadIdentity;
  readonly policies: PolicyStore;
  readonly secrets: SecretStore;
  /** Upstream credentials per connection (its Secret, or Vault), held per agent session. */
  readonly credentials: CredentialSources;
  /** Key for the `hash` masking strategy, stable per install. */
  readonly hashKey: Buffer;
  /** The OIDC verifier for a connection's policy, or undefined when the policy has no OIDC issuer. */
  verifierFor(connection: CompiledConnection): OidcVerifier | undefined;
}

/** The subject a decision is made for: the pod's service account plus the verified end user. */
export function subjectFor(
  workload: WorkloadIdentity,
  user?: { user: string; groups: readonly string[] },
): Subject {
  return user
    ? { serviceAccount: workload.subject, user: user.user, groups: user.groups }
    : { serviceAccount: workload.subject, groups: [] };
}
