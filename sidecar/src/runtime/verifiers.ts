// One OIDC verifier per distinct issuer configuration, shared by connections and kept across
// policy reloads so JWKS caches survive unrelated policy edits.
import { parseDuration } from "../../../api/src/index.ts";
import { createOidcVerifier, type OidcVerifier } from "../identity/index.ts";
import type { CompiledConnection } from "../policy/compile.ts";

export function createVerifierCache() {
  const cache = new Map<string, OidcVerifier>();
  return (connection: CompiledConnection): OidcVerifier | undefined => {
    const oidc = connection.oidc;
    if (!oidc) return undefined;
    const key = JSON.stringify(oidc);
    let v = cache.get(key);
    if (!v) {
      v = createOidcVerifier({
        issuer: oidc.issuer,
        audiences: oidc.audiences,
        jwksUri: oidc.jwksUri,
        algorithms: oidc.algorithms,
        usernameClaim: oidc.usernameClaim,
        groupsClaim: oidc.groupsClaim,
        clockSkewSeconds: oidc.clockSkew ? parseDuration(oidc.clockSkew) / 1000 : undefined,
      });
      cache.set(key, v);
    }
    return v;
  };
}
