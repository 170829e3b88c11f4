// The end user's token on an HTTP request: taken from the user header, checked to be a compact
// JWS before it reaches the verifier, and removed by the HTTP guard before the request goes upstream.
import { IdentityError } from "./errors.ts";
import { MAX_TOKEN_LENGTH } from "./oidc.ts";

/** Lower-case (as node:http presents it); the HTTP handler must strip it before forwarding upstream. */
export const IDENTITY_HEADER = "x-airlock-identity";

// Compact JWS is three base64url segments; anything else (spaces, commas from joined duplicate
// headers, quotes) is rejected here so it never reaches the verifier or a log line.
const COMPACT_TOKEN = /^[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;
const BEARER = /^bearer[ \t]+/i;

/**
 * Extracts the end-user token from an `X-Airlock-Identity` value: `Bearer <jwt>` or a bare `<jwt>`.
 * Returns undefined when the header is absent or blank (the agent acts for nobody); throws
 * `IdentityError("malformed")` when it is present but unusable, including repeated headers, which
 * would otherwise let a second value shadow the first.
 */
export function extractIdentityToken(value: string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string") {
    if (value.length === 0) return undefined;
    if (value.length > 1) throw new IdentityError("malformed", "identity header must appear at most once");
    return extractIdentityToken(value[0]);
  }
  // Cap before any string work; the slack covers the "Bearer " prefix and surrounding whitespace.
  if (value.length > MAX_TOKEN_LENGTH + 64) {
    throw new IdentityError("malformed", "identity token is too large");
  }
  const trimmed = value.trim();
  if (trimmed === "") return undefined;
  const token = trimmed.replace(BEARER, "");
  if (!COMPACT_TOKEN.test(token)) {
    throw new IdentityError("malformed", "identity header must be 'Bearer <jwt>' or a bare JWT");
  }
  return token;
}
