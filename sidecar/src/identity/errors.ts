/**
 * Stable reason codes for end-user identity failures. Callers map them to protocol-native denials and
 * audit events, so they must never change meaning. `invalid_config` is an operator error raised when
 * a verifier is built, never while verifying a request.
 */
export type IdentityErrorCode =
  | "malformed"
  | "unsupported_algorithm"
  | "bad_signature"
  | "expired"
  | "not_yet_valid"
  | "wrong_issuer"
  | "wrong_audience"
  | "unknown_key"
  | "jwks_unavailable"
  | "missing_claim"
  | "invalid_config";

/**
 * An identity failure whose message is safe to return to the agent: fixed wording, never the token,
 * never claim values taken from the token (they are attacker-controlled and may be personal data).
 */
export class IdentityError extends Error {
  readonly code: IdentityErrorCode;

  constructor(code: IdentityErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "IdentityError";
    this.code = code;
  }
}

export function isIdentityError(err: unknown): err is IdentityError {
  return err instanceof IdentityError;
}
