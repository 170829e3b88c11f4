// Client side of PostgreSQL password authentication: SCRAM-SHA-256 (RFC 5802/7677, without
// channel binding) and MD5. The sidecar holds the credential; the agent never sees it.
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from "node:crypto";
import { promisify } from "node:util";

const pbkdf2Async = promisify(pbkdf2);

// SaltedPassword depends only on (password, salt, iterations), which stay the same for a role
// until its password changes: remember a few so reconnects skip the key stretching.
const saltedCache = new Map<string, Buffer>();
async function saltedPassword(password: string, salt: string, iterations: number): Promise<Buffer> {
  const key = createHash("sha256").update(`${iterations}\0${salt}\0${password}`).digest("base64");
  const hit = saltedCache.get(key);
  if (hit) return hit;
  const v = await pbkdf2Async(password, Buffer.from(salt, "base64"), iterations, 32, "sha256");
  if (saltedCache.size >= 16) saltedCache.delete(saltedCache.keys().next().value as string);
  saltedCache.set(key, v);
  return v;
}

export class AuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AuthError";
  }
}

/** `md5` + md5(md5(password + user) + salt), hex. */
export function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = createHash("md5")
    .update(password + user, "utf8")
    .digest("hex");
  return `md5${createHash("md5")
    .update(Buffer.concat([Buffer.from(inner, "utf8"), salt]))
    .digest("hex")}`;
}

const hmac = (key: Buffer, data: string | Buffer) => createHmac("sha256", key).update(data).digest();
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest();

function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] as number) ^ (b[i] as number);
  return out;
}

function attributes(msg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(",")) {
    const eq = part.indexOf("=");
    if (eq === 1) out.set(part[0] as string, part.slice(2));
  }
  return out;
}

/**
 * A SCRAM-SHA-256 exchange. PostgreSQL ignores the user name in the SCRAM messages (it uses the
 * startup packet's), so `n=` is empty as libpq sends it. The password is used as is (no SASLprep:
 * like libpq, which falls back to the raw password when SASLprep fails, ASCII passwords are
 * unaffected).
 */
export class ScramClient {
  readonly #password: string;
  readonly #nonce: string;
  readonly #user: string;
  #clientFirstBare = "";
  #serverSignature: Buffer | undefined;
  #verified = false;

  /** The server proved its signature (SASLFinal checked). */
  get verified(): boolean {
    return this.#verified;
  }

  constructor(password: string, nonce = randomBytes(18).toString("base64"), user = "") {
    this.#password = password;
    this.#nonce = nonce;
    this.#user = user.replace(/=/g, "=3D").replace(/,/g, "=2C");
  }

  /** client-first-message (with the "n,," GS2 header: no channel binding). */
  first(): Buffer {
    this.#clientFirstBare = `n=${this.#user},r=${this.#nonce}`;
    return Buffer.from(`n,,${this.#clientFirstBare}`, "utf8");
  }

  /** client-final-message for the server-first-message. */
  async final(serverFirst: string): Promise<Buffer> {
    const a = attributes(serverFirst);
    const nonce = a.get("r");
    const salt = a.get("s");
    const iterations = Number(a.get("i"));
    if (!nonce || !salt || !Number.isInteger(iterations) || iterations < 1)
      throw new AuthError("malformed SCRAM server-first-message");
    if (!nonce.startsWith(this.#nonce) || nonce.length === this.#nonce.length)
      throw new AuthError("SCRAM server nonce does not extend the client nonce");
    if (iterations > 10_000_000) throw new AuthError("SCRAM iteration count is unreasonably large");
    const salted = await saltedPassword(this.#password, salt, iterations);
    const clientKey = hmac(salted, "Client Key");
    const storedKey = sha256(clientKey);
    const withoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.#clientFirstBare},${serverFirst},${withoutProof}`;
    const proof = xor(clientKey, hmac(storedKey, authMessage));
    this.#serverSignature = hmac(hmac(salted, "Server Key"), authMessage);
    return Buffer.from(`${withoutProof},p=${proof.toString("base64")}`, "utf8");
  }

  /** Checks the server-final-message: the server proves it knows the verifier too. */
  verify(serverFinal: string): void {
    const a = attributes(serverFinal);
    if (a.has("e")) throw new AuthError(`SCRAM authentication failed: ${a.get("e")}`);
    const v = a.get("v");
    if (!v || !this.#serverSignature) throw new AuthError("malformed SCRAM server-final-message");
    const got = Buffer.from(v, "base64");
    if (got.length !== this.#serverSignature.length || !timingSafeEqual(got, this.#serverSignature))
      throw new AuthError("SCRAM server signature does not match: the upstream is not who it claims to be");
    this.#verified = true;
  }
}
