// Approvals are only as good as the admission policy that makes the API server check who wrote
// them (crds/approvals-vap.yaml). Before trusting any approval the sidecar checks that the policy
// and its binding are installed and enforcing; if they are verifiably missing, operations that need
// an approval fail closed with a message that says how to fix it.
import { AdmissionregistrationV1Api, ApiException, type KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { withTimeout } from "./kubernetes-store.ts";

export const ADMISSION_POLICY_NAME = "airlock-accessrequest-decisions";

/**
 * A check for ApprovalServiceOptions.verifyTrust: resolves to a problem, or undefined when the
 * policy is in place, or when this sidecar may not read it (then it logs a warning once: bind the
 * airlock-sidecar-cluster ClusterRole to enable the check). Throws when the API cannot be reached.
 */
export function admissionPolicyCheck(
  kubeConfig: KubeConfig,
  logger: Logger,
  timeoutMs = 5000,
): () => Promise<string | undefined> {
  const api = kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  let warned = false;
  const missing = (what: string) =>
    `the ${what} ${ADMISSION_POLICY_NAME} is not installed, so approvals could be forged; ` +
    "install it (kubectl apply -f crds/) — operations that need an approval are refused until then";
  return async () => {
    try {
      const [policy, binding] = await withTimeout(
        Promise.all([
          api.readValidatingAdmissionPolicy({ name: ADMISSION_POLICY_NAME }),
          api.readValidatingAdmissionPolicyBinding({ name: ADMISSION_POLICY_NAME }),
        ]),
        timeoutMs,
        "read the AccessRequest admission policy",
      );
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
      if (err instanceof ApiException && err.code === 404)
        return missing(
          String(err.body).includes("binding")
            ? "ValidatingAdmissionPolicyBinding"
            : "ValidatingAdmissionPolicy",
        );
      if (err instanceof ApiException && err.code === 403) {
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
