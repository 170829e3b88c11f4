// Approvals are only as good as the admission policy that makes the API server check who wrote
// them (crds/approvals-vap.yaml). Before trusting any approval the sidecar checks that the policy
// and its binding are installed and enforcing; if they are verifiably missing, operations that need
// an approval fail closed with a message that says how to fix it.
import type { Logger } from "pino";
import { KubeApiError, type KubeClient } from "../kube/client.ts";

export const ADMISSION_POLICY_NAME = "airlock-accessrequest-decisions";

/**
 * A check for ApprovalServiceOptions.verifyTrust: resolves to a problem, or undefined when the
 * policy is in place, or when this sidecar may not read it (then it logs a warning once: bind the
 * airlock-sidecar-cluster ClusterRole to enable the check). Throws when the API cannot be reached.
 */
export function admissionPolicyCheck(
  kube: KubeClient,
  logger: Logger,
  timeoutMs = 5000,
): () => Promise<string | undefined> {
  const base = "/apis/admissionregistration.k8s.io/v1";
  interface PolicySpec {
    spec?: { failurePolicy?: string };
  }
  interface BindingSpec {
    spec?: {
      policyName?: string;
      validationActions?: string[];
      matchResources?: { namespaceSelector?: { matchLabels?: unknown }; objectSelector?: unknown };
    };
  }
  const read = <T>(kind: string, what: string) =>
    kube
      .request<T>("GET", `${base}/${kind}/${ADMISSION_POLICY_NAME}`, { timeoutMs })
      .catch((err: unknown) => {
        if (err instanceof KubeApiError && err.status === 404) throw new NotFound(what);
        throw err;
      });
  let warned = false;
  const missing = (what: string) =>
    `the ${what} ${ADMISSION_POLICY_NAME} is not installed, so approvals could be forged; ` +
    "install it (kubectl apply -f crds/) — operations that need an approval are refused until then";
  return async () => {
    try {
      const [policy, binding] = await Promise.all([
        read<PolicySpec>("validatingadmissionpolicies", "ValidatingAdmissionPolicy"),
        read<BindingSpec>("validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding"),
      ]);
      if ((policy.spec?.failurePolicy ?? "Fail") !== "Fail")
        return `ValidatingAdmissionPolicy ${ADMISSION_POLICY_NAME} must have failurePolicy Fail`;
      if (
        binding.spec?.policyName !== ADMISSION_POLICY_NAME ||
        !binding.spec.validationActions?.includes("Deny")
      )
        return `ValidatingAdmissionPolicyBinding ${ADMISSION_POLICY_NAME} must bind ${ADMISSION_POLICY_NAME} with validationActions [Deny]`;
      if (
        binding.spec.matchResources?.namespaceSelector?.matchLabels ||
        binding.spec.matchResources?.objectSelector
      )
        logger.info(
          "the AccessRequest admission policy binding is scoped by selectors; make sure it covers this namespace",
        );
      return undefined;
    } catch (err) {
      if (err instanceof NotFound) return missing(err.message);
      if (err instanceof KubeApiError && err.status === 403) {
        if (!warned)
          logger.warn(
            "cannot read the AccessRequest admission policy (forbidden); bind the airlock-sidecar-cluster ClusterRole to let the sidecar verify it",
          );
        warned = true;
        return undefined;
      }
      throw err;
    }
  };
}

class NotFound extends Error {}
