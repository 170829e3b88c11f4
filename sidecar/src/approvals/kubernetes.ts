// The Kubernetes half of approvals: the AccessRequest store of the pod's namespace and the check
// that the admission policy guarding decisions is installed (Kubernetes mode only).
import type { Logger } from "pino";
import type { WorkloadIdentity } from "../identity/index.ts";
import type { KubeClient } from "../kube/client.ts";
import { createKubernetesStore } from "./kubernetes-store.ts";
import type { ApprovalStore } from "./store.ts";
import { admissionPolicyCheck } from "./trust.ts";

export function kubernetesApprovals(
  kube: KubeClient,
  workload: WorkloadIdentity,
  logger: Logger,
  opts: { verifyAdmissionPolicy?: boolean } = {},
): { store: ApprovalStore; verifyTrust?: () => Promise<string | undefined> } {
  const log = logger.child({ component: "approvals" });
  const store = createKubernetesStore({
    kube,
    namespace: workload.namespace,
    podName: workload.podName,
    logger: log,
  });
  return opts.verifyAdmissionPolicy === false
    ? { store }
    : { store, verifyTrust: admissionPolicyCheck(kube, log) };
}
