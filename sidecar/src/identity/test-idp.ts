// Test-only: a real OIDC identity provider on loopback (discovery + JWKS over node:http) so the
// verifier is exercised through actual HTTP fetches, caching and refetching. Not exported by index.ts.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { CryptoKey, JWK, JWTPayload } from "jose";
import { exportJWK, generateKeyPair, SignJWT } from "jose";

export interface TestKey {
  readonly kid: string;
  readonly alg: "RS256" | "ES256";
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly publicJwk: JWK;
}

export async function makeKey(alg: "RS256" | "ES256", kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, privateKey, publicKey, publicJwk };
}

/** Signs `claims` with `key`; `header` overrides (e.g. a different `kid`, or no `kid`). */
export function signToken(
  key: TestKey,
  claims: JWTPayload,
  header: { kid?: string | undefined } = { kid: key.kid },
): Promise<string> {
  const protectedHeader = { alg: key.alg, typ: "JWT", ...header };
  if (protectedHeader.kid === undefined) delete protectedHeader.kid;
  return new SignJWT(claims).setProtectedHeader(protectedHeader).sign(key.privateKey);
}

export class TestIdp {
  readonly url: string;
  /** Keys currently published in the JWKS; tests mutate this to rotate keys. */
  keys: TestKey[];
  /** Overrides the `issuer` in discovery documents (to simulate a mismatched or hostile document). */
  discoveryIssuer: string | undefined;
  /** Non-200 status for the JWKS endpoint, to simulate an IdP error. */
  jwksStatus: number;
  jwksHits: number;
  discoveryHits: number;
  readonly #server: Server;

  private constructor(server: Server, url: string, keys: TestKey[]) {
    this.#server = server;
    this.url = url;
    this.keys = keys;
    this.discoveryIssuer = undefined;
    this.jwksStatus = 200;
    this.jwksHits = 0;
    this.discoveryHits = 0;
  }

  static async start(keys: TestKey[]): Promise<TestIdp> {
    let idp: TestIdp | undefined;
    const server = createServer((req, res) => idp?.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    idp = new TestIdp(server, `http://127.0.0.1:${port}`, keys);
    return idp;
  }

  get jwksUri(): string {
    return `${this.url}/jwks`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? "/", this.url).pathname;
    const suffix = "/.well-known/openid-configuration";
    if (path.endsWith(suffix)) {
      // Any prefix is an issuer path (e.g. /realms/agents), as with Keycloak.
      this.discoveryHits++;
      const issuer = this.url + path.slice(0, -suffix.length);
      json(res, 200, { issuer: this.discoveryIssuer ?? issuer, jwks_uri: this.jwksUri });
      return;
    }
    if (path === "/jwks") {
      this.jwksHits++;
      if (this.jwksStatus !== 200) json(res, this.jwksStatus, { error: "unavailable" });
      else json(res, 200, { keys: this.keys.map((k) => k.publicJwk) });
      return;
    }
    json(res, 404, { error: "not found" });
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

/** A loopback URL on which nothing listens (bound, then released). */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
