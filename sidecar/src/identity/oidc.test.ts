import type { JWTPayload } from "jose";
import { base64url, exportSPKI, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  closedPortUrl,
  makeKey,
  signToken,
  TestIdp,
  type TestKey,
} from "../../../test/fixtures/oidc-provider.ts";
import { IdentityError, type IdentityErrorCode } from "./errors.ts";
import { createOidcVerifier, MAX_TOKEN_LENGTH, type OidcVerifierConfig } from "./oidc.ts";

const AUDIENCE = "airlock";
const now = () => Math.floor(Date.now() / 1000);

async function expectCode(promise: Promise<unknown>, code: IdentityErrorCode, token?: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IdentityError);
  expect((err as IdentityError).code).toBe(code);
  // The agent sees this message: it must never echo the token back.
  if (token) expect((err as IdentityError).message).not.toContain(token);
}

function encodeJson(value: unknown): string {
  return base64url.encode(JSON.stringify(value));
}

describe("createOidcVerifier config", () => {
  const base: OidcVerifierConfig = { issuer: "https://idp.example.com", audiences: [AUDIENCE] };

  it.each([[["none"]], [["NONE"]], [["HS256"]], [["RS256", "HS512"]], [["XS256"]], [[]]])(
    "rejects algorithms %j",
    (algorithms) => {
      expect(() => createOidcVerifier({ ...base, algorithms })).toThrowError(
        expect.objectContaining({ code: "invalid_config" }),
      );
    },
  );

  it.each<[string, Partial<OidcVerifierConfig>]>([
    ["empty audiences", { audiences: [] }],
    ["empty audience string", { audiences: [""] }],
    ["plain http issuer off loopback", { issuer: "http://idp.example.com" }],
    ["issuer with a query", { issuer: "https://idp.example.com/?a=b" }],
    ["plain http jwksUri off loopback", { jwksUri: "http://idp.example.com/keys" }],
    ["negative clock skew", { clockSkewSeconds: -1 }],
    ["huge clock skew", { clockSkewSeconds: 86_400 }],
    ["zero fetch timeout", { fetchTimeoutMs: 0 }],
  ])("rejects %s", (_name, overrides) => {
    expect(() => createOidcVerifier({ ...base, ...overrides })).toThrowError(
      expect.objectContaining({ code: "invalid_config" }),
    );
  });

  it("accepts asymmetric algorithms and http on loopback without touching the network", () => {
    const v = createOidcVerifier({
      issuer: "http://127.0.0.1:1",
      audiences: [AUDIENCE],
      algorithms: ["PS256", "ES384", "EdDSA"],
    });
    expect(v.issuer).toBe("http://127.0.0.1:1");
  });
});

describe("verify against a live JWKS server", () => {
  let idp: TestIdp;
  let rsa: TestKey;
  let ec: TestKey;

  beforeAll(async () => {
    [rsa, ec] = await Promise.all([makeKey("RS256", "rsa-1"), makeKey("ES256", "ec-1")]);
    idp = await TestIdp.start([rsa, ec]);
  });
  afterAll(async () => {
    await idp.stop();
  });

  const verifier = (overrides: Partial<OidcVerifierConfig> = {}) =>
    createOidcVerifier({ issuer: idp.url, audiences: [AUDIENCE], ...overrides });
  const claims = (overrides: JWTPayload = {}): JWTPayload => ({
    iss: idp.url,
    aud: AUDIENCE,
    sub: "user-123",
    iat: now(),
    exp: now() + 300,
    ...overrides,
  });

  describe("accepts", () => {
    it("an RS256 token via OIDC discovery", async () => {
      const exp = now() + 300;
      const token = await signToken(rsa, claims({ exp, groups: ["sre", "dba"] }));
      const identity = await verifier().verify(token);
      expect(identity).toEqual({
        user: "user-123",
        groups: ["sre", "dba"],
        issuer: idp.url,
        subject: "user-123",
        expiresAt: new Date(exp * 1000),
      });
    });

    it("an ES256 token", async () => {
      const token = await signToken(ec, claims());
      const identity = await verifier({ jwksUri: idp.jwksUri }).verify(token);
      expect(identity.user).toBe("user-123");
      expect(identity.groups).toEqual([]);
    });

    it("a token whose aud array contains a configured audience", async () => {
      const token = await signToken(rsa, claims({ aud: ["other", AUDIENCE] }));
      await expect(verifier({ audiences: ["x", AUDIENCE] }).verify(token)).resolves.toMatchObject({
        subject: "user-123",
      });
    });

    it("an expired token still within the clock skew", async () => {
      const token = await signToken(rsa, claims({ exp: now() - 10 }));
      await expect(verifier({ clockSkewSeconds: 30 }).verify(token)).resolves.toBeDefined();
    });

    it("a not-yet-valid token still within the clock skew", async () => {
      const token = await signToken(rsa, claims({ nbf: now() + 10 }));
      await expect(verifier({ clockSkewSeconds: 30 }).verify(token)).resolves.toBeDefined();
    });

    it("a custom groups claim", async () => {
      const token = await signToken(rsa, claims({ groups: ["ignored"], roles: ["oncall"] }));
      const identity = await verifier({ groupsClaim: "roles" }).verify(token);
      expect(identity.groups).toEqual(["oncall"]);
    });

    it("email as the username claim", async () => {
      const token = await signToken(rsa, claims({ email: "ada@example.com", email_verified: true }));
      const identity = await verifier({ usernameClaim: "email" }).verify(token);
      expect(identity.user).toBe("ada@example.com");
      expect(identity.subject).toBe("user-123");
    });

    it("an issuer with a path (discovery appended to it)", async () => {
      const issuer = `${idp.url}/realms/agents`;
      const token = await signToken(rsa, claims({ iss: issuer }));
      await expect(verifier({ issuer }).verify(token)).resolves.toMatchObject({ issuer });
    });

    it("a token without kid when several keys could match, by trying each", async () => {
      const rsa2 = await makeKey("RS256", "rsa-alt");
      const two = await TestIdp.start([rsa2, rsa]);
      try {
        const token = await signToken(rsa, claims({ iss: two.url }), { kid: undefined });
        const v = createOidcVerifier({ issuer: two.url, audiences: [AUDIENCE] });
        await expect(v.verify(token)).resolves.toMatchObject({ subject: "user-123" });
      } finally {
        await two.stop();
      }
    });

    it("ready() preloads discovery and keys", async () => {
      const before = idp.jwksHits;
      const v = verifier();
      await v.ready();
      expect(idp.jwksHits).toBe(before + 1);
      await v.verify(await signToken(rsa, claims()));
      expect(idp.jwksHits).toBe(before + 1);
    });
  });

  describe("rejects", () => {
    it("alg none (unsigned) without fetching keys", async () => {
      const token = `${encodeJson({ alg: "none", typ: "JWT" })}.${encodeJson(claims())}.`;
      const before = idp.jwksHits + idp.discoveryHits;
      await expectCode(verifier().verify(token), "unsupported_algorithm", token);
      expect(idp.jwksHits + idp.discoveryHits).toBe(before);
    });

    it("HS256 signed with the RSA public key PEM as HMAC secret (key confusion)", async () => {
      const pem = await exportSPKI(rsa.publicKey);
      const token = await new SignJWT(claims())
        .setProtectedHeader({ alg: "HS256", kid: rsa.kid, typ: "JWT" })
        .sign(new TextEncoder().encode(pem));
      await expectCode(verifier().verify(token), "unsupported_algorithm", token);
    });

    it("an algorithm outside the configured list (ES256 when only RS256 allowed)", async () => {
      const token = await signToken(ec, claims());
      await expectCode(verifier({ algorithms: ["RS256"] }).verify(token), "unsupported_algorithm", token);
    });

    it("an expired token beyond the clock skew", async () => {
      const token = await signToken(rsa, claims({ exp: now() - 60 }));
      await expectCode(verifier({ clockSkewSeconds: 30 }).verify(token), "expired", token);
    });

    it("a not-yet-valid token beyond the clock skew", async () => {
      const token = await signToken(rsa, claims({ nbf: now() + 120 }));
      await expectCode(verifier({ clockSkewSeconds: 30 }).verify(token), "not_yet_valid", token);
    });

    it("a wrong issuer", async () => {
      const token = await signToken(rsa, claims({ iss: "https://evil.example.com" }));
      await expectCode(verifier().verify(token), "wrong_issuer", token);
    });

    it("a wrong audience", async () => {
      const token = await signToken(rsa, claims({ aud: "someone-else" }));
      await expectCode(verifier().verify(token), "wrong_audience", token);
    });

    it("a token without exp", async () => {
      const { exp: _exp, ...noExp } = claims();
      const token = await signToken(rsa, noExp);
      await expectCode(verifier().verify(token), "missing_claim", token);
    });

    it("a token without sub", async () => {
      const { sub: _sub, ...noSub } = claims();
      const token = await signToken(rsa, noSub);
      await expectCode(verifier().verify(token), "missing_claim", token);
    });

    it("an unknown kid, then accepts it once the IdP rotates it in (refetch on unknown kid)", async () => {
      const rotated = await makeKey("RS256", "rsa-rotated");
      const rotating = await TestIdp.start([rsa]);
      try {
        const v = createOidcVerifier({
          issuer: rotating.url,
          audiences: [AUDIENCE],
          jwksUri: rotating.jwksUri,
          jwksCooldownMs: 0,
        });
        await v.verify(await signToken(rsa, claims({ iss: rotating.url })));
        expect(rotating.jwksHits).toBe(1);

        const token = await signToken(rotated, claims({ iss: rotating.url }));
        await expectCode(v.verify(token), "unknown_key", token);
        expect(rotating.jwksHits).toBe(2);

        rotating.keys = [rsa, rotated];
        await expect(v.verify(token)).resolves.toMatchObject({ subject: "user-123" });
        expect(rotating.jwksHits).toBe(3);
      } finally {
        await rotating.stop();
      }
    });

    it("an unknown kid without refetching during the cooldown", async () => {
      const stranger = await makeKey("RS256", "stranger");
      const v = verifier({ jwksUri: idp.jwksUri });
      await v.verify(await signToken(rsa, claims()));
      const before = idp.jwksHits;
      const token = await signToken(stranger, claims());
      await expectCode(v.verify(token), "unknown_key", token);
      await expectCode(v.verify(token), "unknown_key", token);
      expect(idp.jwksHits).toBe(before);
    });

    it("a token signed by a different key reusing a published kid", async () => {
      const impostor = await makeKey("RS256", rsa.kid);
      const token = await signToken(impostor, claims());
      await expectCode(verifier().verify(token), "bad_signature", token);
    });

    it("a tampered payload", async () => {
      const token = await signToken(rsa, claims({ sub: "user-123" }));
      const [h, , s] = token.split(".");
      const forged = `${h}.${encodeJson(claims({ sub: "admin" }))}.${s}`;
      await expectCode(verifier().verify(forged), "bad_signature", forged);
    });

    it("a real header with the signature stripped", async () => {
      const token = await signToken(rsa, claims());
      const stripped = token.slice(0, token.lastIndexOf(".") + 1);
      await expectCode(verifier().verify(stripped), "bad_signature", stripped);
    });

    it.each([
      "",
      "garbage",
      "a.b",
      "a.b.c.d.e",
      "!!!.???.###",
      "Zm9v.Zm9v.Zm9v",
      `${encodeJson({ typ: "JWT" })}.${encodeJson({})}.sig`,
      "Bearer a.b.c",
      "ey\u00e9.ey.ey",
    ])("garbage %j as malformed", async (token) => {
      await expectCode(verifier().verify(token), "malformed");
    });

    it("an oversized token before parsing or fetching", async () => {
      const token = await signToken(rsa, claims({ pad: "x".repeat(MAX_TOKEN_LENGTH) }));
      expect(token.length).toBeGreaterThan(MAX_TOKEN_LENGTH);
      const before = idp.jwksHits + idp.discoveryHits;
      await expectCode(verifier().verify(token), "malformed", token);
      expect(idp.jwksHits + idp.discoveryHits).toBe(before);
    });

    it("when the JWKS server is down", async () => {
      const down = await closedPortUrl();
      const token = await signToken(rsa, claims());
      await expectCode(verifier({ jwksUri: `${down}/jwks` }).verify(token), "jwks_unavailable", token);
    });

    it("when discovery is unreachable", async () => {
      const down = await closedPortUrl();
      const token = await signToken(rsa, claims({ iss: down }));
      await expectCode(
        createOidcVerifier({ issuer: down, audiences: [AUDIENCE] }).verify(token),
        "jwks_unavailable",
      );
    });

    it("when the JWKS endpoint answers an error status", async () => {
      const failing = await TestIdp.start([rsa]);
      failing.jwksStatus = 503;
      try {
        const token = await signToken(rsa, claims({ iss: failing.url }));
        const v = createOidcVerifier({
          issuer: failing.url,
          audiences: [AUDIENCE],
          jwksUri: failing.jwksUri,
        });
        await expectCode(v.verify(token), "jwks_unavailable", token);
      } finally {
        await failing.stop();
      }
    });

    it("a discovery document whose issuer does not match", async () => {
      const hostile = await TestIdp.start([rsa]);
      hostile.discoveryIssuer = "https://evil.example.com";
      try {
        const v = createOidcVerifier({ issuer: hostile.url, audiences: [AUDIENCE] });
        await expectCode(v.ready(), "jwks_unavailable");
        const token = await signToken(rsa, claims({ iss: hostile.url }));
        await expectCode(v.verify(token), "jwks_unavailable", token);
        expect(hostile.jwksHits).toBe(0);
      } finally {
        await hostile.stop();
      }
    });

    it.each([[["sre", 42]], ["sre"], [{ admin: true }], [null]])("a groups claim of %j", async (groups) => {
      const token = await signToken(rsa, claims({ groups }));
      await expectCode(verifier().verify(token), "malformed", token);
    });

    it("an unverified email as the username", async () => {
      const token = await signToken(rsa, claims({ email: "ada@example.com", email_verified: false }));
      await expectCode(verifier({ usernameClaim: "email" }).verify(token), "missing_claim", token);
    });

    it("a token lacking the configured username claim", async () => {
      const token = await signToken(rsa, claims());
      await expectCode(verifier({ usernameClaim: "email" }).verify(token), "missing_claim", token);
    });
  });
});
