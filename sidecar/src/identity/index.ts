// Identity for the request path (docs/architecture.md, the request path): who the workload is, and the
// verified end user it acts for.
export type { IdentityErrorCode } from "./errors.ts";
export { IdentityError, isIdentityError } from "./errors.ts";
export type { OidcVerifier, OidcVerifierConfig, UserIdentity } from "./oidc.ts";
export { ALLOWED_ALGORITHMS, createOidcVerifier, MAX_TOKEN_LENGTH } from "./oidc.ts";
export { extractIdentityToken, IDENTITY_HEADER } from "./request-token.ts";
export type { WorkloadIdentity } from "./workload.ts";
export {
  DEFAULT_PODINFO_DIR,
  loadWorkloadIdentity,
  parseDownwardApiLabels,
  serviceAccountSubject,
  WorkloadIdentityError,
} from "./workload.ts";
