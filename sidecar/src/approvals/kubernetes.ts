// The Kubernetes half of approvals: the AccessRequest store of the pod's namespace and the check
// that the admission policy guarding decisions is installed. Loaded only in Kubernetes mode, so a
// standalone sidecar never loads the Kubernetes client.
import type { KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import type { WorkloadIdentity } from "../identity/index.ts";
import { createKubernetesStore } from "./kubernetes-store.ts";
import type { ApprovalStore } from "./store.ts";
import { admissionPolicyCheck } from "./trust.ts";

export function kubernetesApprovals(
  kubeConfig: KubeConfig,
  workload: WorkloadIdentity,
  logger: Logger,
  opts: { verifyAdmissionPolicy?: boolean } = {},
): { store: ApprovalStore; verifyTrust?: () => Promise<string | undefined> } {
  const log = logger.child({ component: "approvals" });
  const store = createKubernetesStore({
    kubeConfig,
    namespace: workload.namespace,
    podName: workload.podName,
    logger: log,
  });
  return opts.verifyAdmissionPolicy === false
    ? { store }
    : { store, verifyTrust: admissionPolicyCheck(kubeConfig, log) };
}
