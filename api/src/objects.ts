// Whole objects as clients see them: metadata from the Kubernetes client, spec/status from here.
import type { V1ObjectMeta } from "@kubernetes/client-node";
import type { AccessRequestSpec, AccessRequestStatus } from "./access-request.ts";
import type { AgentAccessPolicySpec, AgentAccessPolicyStatus } from "./agent-access-policy.ts";

export interface AgentAccessPolicy {
  apiVersion: "airlock.dev/v1alpha1";
  kind: "AgentAccessPolicy";
  metadata: V1ObjectMeta;
  spec: AgentAccessPolicySpec;
  status?: AgentAccessPolicyStatus;
}

export interface AccessRequest {
  apiVersion: "airlock.dev/v1alpha1";
  kind: "AccessRequest";
  metadata: V1ObjectMeta;
  spec: AccessRequestSpec;
  status?: AccessRequestStatus;
}
