/** API group and version: a contract shared by the CRDs, the sidecar, the injector and the CLI. */
export const GROUP = "airlock.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

/**
 * File, in the sidecar's service-account token directory, of the projected token the sidecar logs
 * in to Vault with: the pod's own token when no audience is set, else one the injector projects
 * with that audience (the injector and the sidecar both name it from here).
 */
export function vaultTokenFile(audience?: string): string {
  if (audience === undefined) return "token";
  let h = 0x811c9dc5; // FNV-1a: a stable, path-safe name for any audience string
  for (const c of new TextEncoder().encode(audience)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  return `vault-token-${h.toString(16).padStart(8, "0")}`;
}
