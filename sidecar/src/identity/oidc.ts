// End-user identity: OIDC tokens (ID or access tokens) verified with jose against the issuer's
// discovery document and JWKS (cached, refreshed on an unknown key id, failures rate-limited);
// audiences, algorithms, clock skew and size limits checked before any claim is trusted.
import { createRequire } from "node:module";
import type {
  CompactJWSHeaderParameters,
  CryptoKey,
  FlattenedJWSInput,
  JWSAlgorithm,
  JWTPayload,
  JWTVerifyOptions,
  RemoteJWKSet,
} from "jose";
import { SIGNING_ALGORITHMS } from "../../../api/src/agent-access-policy.ts";
import { IdentityError } from "./errors.ts";

// jose loads on first use (a connection with an OIDC issuer verifying a token): a sidecar whose
// policies name no issuer never carries it (require of an ES module: the same instance an
// import would give).
const requireModule = createRequire(import.meta.url);
let joseModule: typeof import("jose") | undefined;
function jose(): typeof import("jose") {
  joseModule ??= requireModule("jose") as typeof import("jose");
  return joseModule;
}

/** Tokens longer than this are rejected before any parsing: real ID/access tokens are a few KiB. */
export const MAX_TOKEN_LENGTH = 16 * 1024;

/**
 * Asymmetric algorithms only. `none` would accept unsigned tokens, and HS* would let anyone who has
 * the issuer's *public* key (everyone) mint tokens if a key were ever used as an HMAC secret.
 */
export const ALLOWED_ALGORITHMS: readonly JWSAlgorithm[] = SIGNING_ALGORITHMS;

const DEFAULT_ALGORITHMS: readonly JWSAlgorithm[] = ["RS256", "ES256"];
const MAX_CLOCK_SKEW_SECONDS = 300;
// Cap on how often a failed discovery is retried, so an IdP outage is not amplified per request.
const DISCOVERY_RETRY_MS = 5_000;
const MAX_DISCOVERY_BYTES = 512 * 1024;

export interface OidcVerifierConfig {
  /** Exact `iss` value; also the base of OIDC discovery. https, or http on loopback only. */
  issuer: string;
  /** The token's `aud` must contain at least one of these. */
  audiences: string[];
  /** Skips discovery when set. */
  jwksUri?: string;
  /** Default ["RS256", "ES256"]. `none` and HS* are refused at construction. */
  algorithms?: string[];
  /** Default 30. Tolerance applied to `exp` and `nbf`. */
  clockSkewSeconds?: number;
  /** Default "sub"; e.g. "email" (then `email_verified: false` is refused). */
  usernameClaim?: string;
  /** Default "groups". */
  groupsClaim?: string;
  /** Default 5000. Timeout for discovery and JWKS requests. */
  fetchTimeoutMs?: number;
  /** Default 30000. Minimum time between JWKS refetches triggered by an unknown `kid`. */
  jwksCooldownMs?: number;
  /** Default 600000. Cached keys are refetched after this age. */
  jwksCacheMaxAgeMs?: number;
}

/** A verified end user on whose behalf the agent acts. */
export interface UserIdentity {
  user: string;
  groups: string[];
  issuer: string;
  subject: string;
  expiresAt: Date;
}

export interface OidcVerifier {
  readonly issuer: string;
  /** Verifies a compact JWT; rejects with `IdentityError` only. */
  verify(token: string): Promise<UserIdentity>;
  /** Resolves discovery and loads the JWKS now (e.g. at startup/readiness); rejects with `IdentityError`. */
  ready(): Promise<void>;
}

interface NormalizedConfig {
  issuer: string;
  audiences: string[];
  jwksUri: URL | undefined;
  algorithms: JWSAlgorithm[];
  clockSkewSeconds: number;
  usernameClaim: string;
  groupsClaim: string;
  fetchTimeoutMs: number;
  jwksCooldownMs: number;
  jwksCacheMaxAgeMs: number;
}

// Three base64url segments; the signature may be empty so that `alg: none` tokens reach the
// algorithm check and are reported as such rather than as generic garbage.
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export function createOidcVerifier(config: OidcVerifierConfig): OidcVerifier {
  const cfg = normalizeConfig(config);
  const verifyOptions: JWTVerifyOptions = {
    issuer: cfg.issuer,
    audience: cfg.audiences,
    algorithms: cfg.algorithms,
    clockTolerance: cfg.clockSkewSeconds,
    // jose only checks exp when present; a token without expiry must never be accepted.
    requiredClaims: ["exp", "sub"],
  };

  let keySet: RemoteJWKSet | undefined;
  let pending: Promise<RemoteJWKSet> | undefined;
  let lastFailure: { error: IdentityError; at: number } | undefined;

  async function loadKeySet(): Promise<RemoteJWKSet> {
    try {
      const url = cfg.jwksUri ?? (await discoverJwksUri(cfg));
      keySet = jose().createRemoteJWKSet(url, {
        timeoutDuration: cfg.fetchTimeoutMs,
        cooldownDuration: cfg.jwksCooldownMs,
        cacheMaxAge: cfg.jwksCacheMaxAgeMs,
      });
      lastFailure = undefined;
      return keySet;
    } catch (err) {
      const error = asUnavailable(err, "OIDC discovery failed");
      lastFailure = { error, at: Date.now() };
      throw error;
    }
  }

  // Discovery is lazy so an IdP blip at sidecar start does not crash the pod; concurrent callers
  // share one in-flight discovery, and a failure is remembered briefly.
  function getKeySet(): Promise<RemoteJWKSet> {
    if (keySet) return Promise.resolve(keySet);
    const retryAfter = Math.min(cfg.jwksCooldownMs, DISCOVERY_RETRY_MS);
    if (lastFailure && Date.now() - lastFailure.at < retryAfter) return Promise.reject(lastFailure.error);
    // `.finally` runs as a microtask, i.e. after the assignment, even if loading settles synchronously.
    pending ??= loadKeySet().finally(() => {
      pending = undefined;
    });
    return pending;
  }

  // jose calls this only after the header parsed and `alg` passed the allow-list, so rejected
  // algorithms never cause network traffic.
  async function getKey(header: CompactJWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> {
    const set = await getKeySet();
    try {
      return await set(header, token);
    } catch (err) {
      if (
        err instanceof jose().errors.JWKSNoMatchingKey ||
        err instanceof jose().errors.JWKSMultipleMatchingKeys ||
        err instanceof jose().errors.JOSENotSupported
      ) {
        throw err;
      }
      throw asUnavailable(err, "could not load the identity provider's signing keys");
    }
  }

  async function verifySignedToken(token: string): Promise<JWTPayload> {
    try {
      return (await jose().jwtVerify(token, getKey, verifyOptions)).payload;
    } catch (err) {
      // No `kid` and several candidate keys: jose hands back the candidates to try in turn.
      if (!(err instanceof jose().errors.JWKSMultipleMatchingKeys)) throw err;
      for await (const key of err) {
        try {
          return (await jose().jwtVerify(token, key, verifyOptions)).payload;
        } catch (inner) {
          if (!(inner instanceof jose().errors.JWSSignatureVerificationFailed)) throw inner;
        }
      }
      throw new (jose().errors.JWSSignatureVerificationFailed)();
    }
  }

  return {
    issuer: cfg.issuer,

    async verify(token: string): Promise<UserIdentity> {
      if (typeof token !== "string" || token.length === 0) {
        throw new IdentityError("malformed", "identity token is empty");
      }
      if (token.length > MAX_TOKEN_LENGTH) {
        throw new IdentityError("malformed", `identity token is longer than ${MAX_TOKEN_LENGTH} characters`);
      }
      if (!COMPACT_JWS.test(token)) {
        throw new IdentityError(
          "malformed",
          "identity token is not a compact JWS (header.payload.signature)",
        );
      }
      let payload: JWTPayload;
      try {
        payload = await verifySignedToken(token);
      } catch (err) {
        throw toIdentityError(err);
      }
      return toUserIdentity(payload, cfg);
    },

    async ready(): Promise<void> {
      const set = await getKeySet();
      if (set.fresh) return;
      try {
        await set.reload();
      } catch (err) {
        throw asUnavailable(err, "could not load the identity provider's signing keys");
      }
    },
  };
}

function toUserIdentity(payload: JWTPayload, cfg: NormalizedConfig): UserIdentity {
  const user = payload[cfg.usernameClaim];
  if (typeof user !== "string" || user === "") {
    throw new IdentityError("missing_claim", `identity token has no usable "${cfg.usernameClaim}" claim`);
  }
  // Same rule as the Kubernetes API server: an unverified email must not become a username.
  if (
    cfg.usernameClaim === "email" &&
    payload.email_verified !== undefined &&
    payload.email_verified !== true
  ) {
    throw new IdentityError("missing_claim", "identity token email is not verified");
  }
  if (typeof payload.sub !== "string" || payload.sub === "") {
    throw new IdentityError("missing_claim", 'identity token has no usable "sub" claim');
  }
  const rawGroups = payload[cfg.groupsClaim];
  let groups: string[] = [];
  if (rawGroups !== undefined) {
    if (!Array.isArray(rawGroups) || !rawGroups.every((g): g is string => typeof g === "string")) {
      throw new IdentityError(
        "malformed",
        `identity token "${cfg.groupsClaim}" claim must be an array of strings`,
      );
    }
    groups = [...rawGroups];
  }
  // jwtVerify has checked iss equality and that exp is a number.
  return {
    user,
    groups,
    issuer: cfg.issuer,
    subject: payload.sub,
    expiresAt: new Date((payload.exp as number) * 1000),
  };
}

/**
 * Maps jose failures to stable codes with fixed messages. jose messages and claim payloads are not
 * forwarded: the payload is attacker-controlled and may hold personal data.
 */
function toIdentityError(err: unknown): IdentityError {
  if (err instanceof IdentityError) return err;
  if (err instanceof jose().errors.JOSEAlgNotAllowed || err instanceof jose().errors.JOSENotSupported) {
    return new IdentityError("unsupported_algorithm", "identity token algorithm is not allowed");
  }
  if (err instanceof jose().errors.JWSInvalid || err instanceof jose().errors.JWTInvalid) {
    return new IdentityError("malformed", "identity token is not a well-formed JWT");
  }
  if (err instanceof jose().errors.JWSSignatureVerificationFailed) {
    return new IdentityError("bad_signature", "identity token signature is invalid");
  }
  if (err instanceof jose().errors.JWTExpired) {
    return new IdentityError("expired", "identity token has expired");
  }
  if (err instanceof jose().errors.JWTClaimValidationFailed) {
    // `claim` names come from jose's fixed set or our requiredClaims, never from the token.
    if (err.reason === "missing") {
      return new IdentityError("missing_claim", `identity token is missing the "${err.claim}" claim`);
    }
    switch (err.claim) {
      case "iss":
        return new IdentityError("wrong_issuer", "identity token issuer is not trusted");
      case "aud":
        return new IdentityError("wrong_audience", "identity token audience is not accepted");
      case "nbf":
        return new IdentityError("not_yet_valid", "identity token is not yet valid");
      default:
        return new IdentityError("malformed", `identity token "${err.claim}" claim is invalid`);
    }
  }
  if (
    err instanceof jose().errors.JWKSNoMatchingKey ||
    err instanceof jose().errors.JWKSMultipleMatchingKeys
  ) {
    return new IdentityError("unknown_key", "identity token signing key is not in the issuer's key set");
  }
  if (err instanceof jose().errors.JWKSTimeout || err instanceof jose().errors.JWKSInvalid) {
    return asUnavailable(err, "could not load the identity provider's signing keys");
  }
  // Anything else (e.g. an RSA key under 2048 bits) still means "not verified": fail closed.
  return new IdentityError("bad_signature", "identity token could not be verified", { cause: err });
}

function asUnavailable(err: unknown, message: string): IdentityError {
  if (err instanceof IdentityError) return err;
  return new IdentityError("jwks_unavailable", `identity provider unavailable: ${message}`, { cause: err });
}

async function discoverJwksUri(cfg: NormalizedConfig): Promise<URL> {
  // OIDC Discovery 1.0 §4: append to the issuer, keeping any path (e.g. Keycloak realms).
  const url = new URL(`${cfg.issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`);
  let response: Response;
  try {
    response = await fetch(url, {
      redirect: "manual",
      signal: AbortSignal.timeout(cfg.fetchTimeoutMs),
      headers: { accept: "application/json" },
    });
  } catch (err) {
    throw new IdentityError(
      "jwks_unavailable",
      "identity provider unavailable: OIDC discovery request failed",
      {
        cause: err,
      },
    );
  }
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new IdentityError(
      "jwks_unavailable",
      `identity provider unavailable: OIDC discovery returned HTTP ${response.status}`,
    );
  }
  let doc: unknown;
  try {
    const text = await response.text();
    if (text.length > MAX_DISCOVERY_BYTES) throw new Error("discovery document too large");
    doc = JSON.parse(text);
  } catch (err) {
    throw new IdentityError(
      "jwks_unavailable",
      "identity provider unavailable: OIDC discovery document is invalid",
      {
        cause: err,
      },
    );
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new IdentityError(
      "jwks_unavailable",
      "identity provider unavailable: OIDC discovery document is invalid",
    );
  }
  const { issuer, jwks_uri: jwksUri } = doc as Record<string, unknown>;
  // OIDC Discovery §4.3: a mismatch means the document is not for this issuer (or was tampered with).
  if (issuer !== cfg.issuer) {
    throw new IdentityError(
      "jwks_unavailable",
      "identity provider unavailable: OIDC discovery issuer does not match the configured issuer",
    );
  }
  if (typeof jwksUri !== "string") {
    throw new IdentityError(
      "jwks_unavailable",
      "identity provider unavailable: OIDC discovery has no jwks_uri",
    );
  }
  try {
    return parseSecureUrl(jwksUri, "jwks_uri");
  } catch (err) {
    throw new IdentityError(
      "jwks_unavailable",
      "identity provider unavailable: OIDC discovery jwks_uri is unusable",
      {
        cause: err,
      },
    );
  }
}

function isLoopbackHost(hostname: string): boolean {
  return (
    hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
  );
}

// Keys fetched over plain HTTP could be swapped by anyone on the path; loopback is allowed for tests
// and node-local IdP proxies.
function parseSecureUrl(value: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${what} is not a valid URL`);
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHost(url.hostname))) {
    throw new Error(`${what} must use https (plain http is only allowed on loopback)`);
  }
  return url;
}

function configError(message: string): IdentityError {
  return new IdentityError("invalid_config", `invalid OIDC verifier config: ${message}`);
}

function normalizeConfig(config: OidcVerifierConfig): NormalizedConfig {
  const { issuer } = config;
  if (typeof issuer !== "string" || issuer === "") throw configError("issuer is required");
  let issuerUrl: URL;
  try {
    issuerUrl = parseSecureUrl(issuer, "issuer");
  } catch (err) {
    throw configError((err as Error).message);
  }
  if (issuerUrl.search !== "" || issuerUrl.hash !== "") {
    throw configError("issuer must not have a query or fragment");
  }

  const { audiences } = config;
  if (!Array.isArray(audiences) || audiences.length === 0) {
    throw configError("audiences must list at least one audience");
  }
  if (audiences.some((a) => typeof a !== "string" || a === "")) {
    throw configError("audiences must be non-empty strings");
  }

  let jwksUri: URL | undefined;
  if (config.jwksUri !== undefined) {
    try {
      jwksUri = parseSecureUrl(config.jwksUri, "jwksUri");
    } catch (err) {
      throw configError((err as Error).message);
    }
  }

  const algorithms = config.algorithms ?? [...DEFAULT_ALGORITHMS];
  if (!Array.isArray(algorithms) || algorithms.length === 0) {
    throw configError("algorithms must list at least one algorithm");
  }
  for (const alg of algorithms) {
    if (typeof alg === "string" && (alg.toLowerCase() === "none" || /^HS\d+$/i.test(alg))) {
      throw configError(
        `algorithm ${JSON.stringify(alg)} is not allowed: only asymmetric signatures are accepted`,
      );
    }
    if (!(ALLOWED_ALGORITHMS as readonly string[]).includes(alg)) {
      throw configError(
        `unsupported algorithm ${JSON.stringify(alg)}; allowed: ${ALLOWED_ALGORITHMS.join(", ")}`,
      );
    }
  }

  const clockSkewSeconds = config.clockSkewSeconds ?? 30;
  if (
    !Number.isFinite(clockSkewSeconds) ||
    clockSkewSeconds < 0 ||
    clockSkewSeconds > MAX_CLOCK_SKEW_SECONDS
  ) {
    throw configError(`clockSkewSeconds must be between 0 and ${MAX_CLOCK_SKEW_SECONDS}`);
  }

  const usernameClaim = config.usernameClaim ?? "sub";
  const groupsClaim = config.groupsClaim ?? "groups";
  if (typeof usernameClaim !== "string" || usernameClaim === "") throw configError("usernameClaim is empty");
  if (typeof groupsClaim !== "string" || groupsClaim === "") throw configError("groupsClaim is empty");

  return {
    issuer,
    audiences: [...audiences],
    jwksUri,
    algorithms: algorithms as JWSAlgorithm[],
    clockSkewSeconds,
    usernameClaim,
    groupsClaim,
    fetchTimeoutMs: nonNegativeInteger(config.fetchTimeoutMs, 5_000, "fetchTimeoutMs", 1),
    jwksCooldownMs: nonNegativeInteger(config.jwksCooldownMs, 30_000, "jwksCooldownMs", 0),
    jwksCacheMaxAgeMs: nonNegativeInteger(config.jwksCacheMaxAgeMs, 600_000, "jwksCacheMaxAgeMs", 1),
  };
}

function nonNegativeInteger(value: number | undefined, fallback: number, name: string, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < min) throw configError(`${name} must be an integer >= ${min}`);
  return value;
}
