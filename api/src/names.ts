/** API group and version: a contract shared by the CRDs, the sidecar, the injector and the CLI. */
export const GROUP = "airlock.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
