// Timing shared by the pod CA and its keeper, apart from pod-ca.ts so the keeper can schedule
// without loading the X.509 library (loaded only once a policy has a host to intercept).

/** Backdating for clock skew between sidecar and agent containers (same node: small). */
export const SKEW_MS = 5 * 60 * 1000;

/** Leaves are not served within this margin of their (or the CA's) notAfter: a tenth of the lifetime, at most the skew allowance. */
export function expiryMargin(lifetimeMs: number): number {
  return Math.min(SKEW_MS, Math.floor(lifetimeMs / 10));
}
