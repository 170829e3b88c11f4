// SSH keys with node:crypto only (no ssh-keygen in the sidecar): OpenSSH private keys
// ("openssh-key-v1", unencrypted) and PEM keys in, node KeyObjects plus SSH public-key blobs and
// SSH signatures out; and the reverse for ed25519 (per-session keys handed to ssh2, test files).
// Supported: ssh-ed25519, ssh-rsa (signing with rsa-sha2-512), ecdsa-sha2-nistp256/384/521.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
  randomBytes,
  sign,
} from "node:crypto";
import { SshFormatError, SshReader, SshWriter } from "./wire.ts";

export type SshKeyType =
  | "ssh-ed25519"
  | "ssh-rsa"
  | "ecdsa-sha2-nistp256"
  | "ecdsa-sha2-nistp384"
  | "ecdsa-sha2-nistp521";

export class SshKeyError extends Error {}

export interface SshPrivateKey {
  readonly type: SshKeyType;
  readonly privateKey: KeyObject;
  /** The SSH public-key blob (`string type, ...`). */
  readonly publicBlob: Buffer;
  /** The algorithm name of signatures this key makes (rsa keys sign with rsa-sha2-512). */
  readonly signatureAlgorithm: string;
  /** An SSH signature blob: `string algorithm, string signature`. */
  sign(data: Buffer): Buffer;
}

const CURVES: Record<string, { ssh: SshKeyType; name: string; jwk: string; hash: string; size: number }> = {
  nistp256: { ssh: "ecdsa-sha2-nistp256", name: "nistp256", jwk: "P-256", hash: "sha256", size: 32 },
  nistp384: { ssh: "ecdsa-sha2-nistp384", name: "nistp384", jwk: "P-384", hash: "sha384", size: 48 },
  nistp521: { ssh: "ecdsa-sha2-nistp521", name: "nistp521", jwk: "P-521", hash: "sha512", size: 66 },
};
const CURVE_BY_JWK: Record<string, string> = {
  "P-256": "nistp256",
  "P-384": "nistp384",
  "P-521": "nistp521",
};

const b64u = (b: Buffer) => b.toString("base64url");
const fromB64u = (s: string | undefined) => {
  if (s === undefined) throw new SshKeyError("incomplete key");
  return Buffer.from(s, "base64url");
};

/** The SSH public-key blob of a node public or private key. */
export function publicBlobOf(key: KeyObject): { type: SshKeyType; blob: Buffer } {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  const jwk = pub.export({ format: "jwk" }) as JsonWebKey;
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519") {
    return {
      type: "ssh-ed25519",
      blob: new SshWriter().string("ssh-ed25519").string(fromB64u(jwk.x)).toBuffer(),
    };
  }
  if (jwk.kty === "RSA") {
    const blob = new SshWriter().string("ssh-rsa").mpint(fromB64u(jwk.e)).mpint(fromB64u(jwk.n)).toBuffer();
    return { type: "ssh-rsa", blob };
  }
  if (jwk.kty === "EC" && jwk.crv && CURVE_BY_JWK[jwk.crv]) {
    const curve = CURVES[CURVE_BY_JWK[jwk.crv] as string];
    if (!curve) throw new SshKeyError(`unsupported curve ${jwk.crv}`);
    const point = Buffer.concat([Buffer.from([4]), fromB64u(jwk.x), fromB64u(jwk.y)]);
    return {
      type: curve.ssh,
      blob: new SshWriter().string(curve.ssh).string(curve.name).string(point).toBuffer(),
    };
  }
  throw new SshKeyError(`unsupported key type ${jwk.kty}${jwk.crv ? `/${jwk.crv}` : ""}`);
}

function signer(privateKey: KeyObject): SshPrivateKey {
  const { type, blob } = publicBlobOf(privateKey);
  if (type === "ssh-ed25519") {
    return {
      type,
      privateKey,
      publicBlob: blob,
      signatureAlgorithm: "ssh-ed25519",
      sign: (data) =>
        new SshWriter()
          .string("ssh-ed25519")
          .string(sign(null, data, privateKey))
          .toBuffer(),
    };
  }
  if (type === "ssh-rsa") {
    return {
      type,
      privateKey,
      publicBlob: blob,
      signatureAlgorithm: "rsa-sha2-512",
      sign: (data) =>
        new SshWriter()
          .string("rsa-sha2-512")
          .string(sign("sha512", data, privateKey))
          .toBuffer(),
    };
  }
  const curve = Object.values(CURVES).find((c) => c.ssh === type);
  if (!curve) throw new SshKeyError(`unsupported key type ${type}`);
  return {
    type,
    privateKey,
    publicBlob: blob,
    signatureAlgorithm: type,
    sign(data) {
      const raw = sign(curve.hash, data, { key: privateKey, dsaEncoding: "ieee-p1363" });
      const inner = new SshWriter()
        .mpint(raw.subarray(0, curve.size))
        .mpint(raw.subarray(curve.size))
        .toBuffer();
      return new SshWriter().string(type).string(inner).toBuffer();
    },
  };
}

const OPENSSH_MAGIC = Buffer.from("openssh-key-v1\0", "latin1");
const OPENSSH_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----";
const OPENSSH_END = "-----END OPENSSH PRIVATE KEY-----";

/** BigInt helpers for RSA CRT parameters that the OpenSSH format does not store. */
const big = (b: Buffer) => BigInt(`0x${b.toString("hex") || "0"}`);
function bigBytes(v: bigint): Buffer {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return Buffer.from(hex, "hex");
}

function parseOpenSsh(text: string): KeyObject {
  const body = text.slice(text.indexOf(OPENSSH_BEGIN) + OPENSSH_BEGIN.length, text.indexOf(OPENSSH_END));
  const data = Buffer.from(body.replace(/\s+/g, ""), "base64");
  if (!data.subarray(0, OPENSSH_MAGIC.length).equals(OPENSSH_MAGIC))
    throw new SshKeyError("not an OpenSSH private key");
  const r = new SshReader(data.subarray(OPENSSH_MAGIC.length));
  const cipher = r.text();
  r.text(); // kdf name
  r.string(); // kdf options
  if (cipher !== "none")
    throw new SshKeyError(
      "encrypted (passphrase-protected) private keys are not supported; store the key unencrypted in the Secret",
    );
  if (r.uint32() !== 1) throw new SshKeyError("OpenSSH key files with several keys are not supported");
  r.string(); // public key
  const priv = new SshReader(r.string());
  const check1 = priv.uint32();
  const check2 = priv.uint32();
  if (check1 !== check2) throw new SshKeyError("corrupt OpenSSH private key (check bytes differ)");
  const type = priv.text();
  if (type === "ssh-ed25519") {
    const pub = priv.string();
    const secret = priv.string();
    return createPrivateKey({
      key: { kty: "OKP", crv: "Ed25519", d: b64u(secret.subarray(0, 32)), x: b64u(pub) },
      format: "jwk",
    });
  }
  if (type === "ssh-rsa") {
    const n = priv.mpint();
    const e = priv.mpint();
    const d = priv.mpint();
    const iqmp = priv.mpint();
    const p = priv.mpint();
    const q = priv.mpint();
    const dp = big(d) % (big(p) - 1n);
    const dq = big(d) % (big(q) - 1n);
    return createPrivateKey({
      key: {
        kty: "RSA",
        n: b64u(n),
        e: b64u(e),
        d: b64u(d),
        p: b64u(p),
        q: b64u(q),
        dp: b64u(bigBytes(dp)),
        dq: b64u(bigBytes(dq)),
        qi: b64u(iqmp),
      },
      format: "jwk",
    });
  }
  if (type.startsWith("ecdsa-sha2-")) {
    const curve = CURVES[priv.text()];
    if (!curve || curve.ssh !== type) throw new SshKeyError(`unsupported ECDSA key ${type}`);
    const q = priv.string();
    const d = priv.mpint();
    if (q[0] !== 4 || q.length !== 1 + 2 * curve.size)
      throw new SshKeyError("unsupported ECDSA point encoding");
    const dPadded = Buffer.concat([Buffer.alloc(Math.max(0, curve.size - d.length)), d]);
    return createPrivateKey({
      key: {
        kty: "EC",
        crv: curve.jwk,
        x: b64u(q.subarray(1, 1 + curve.size)),
        y: b64u(q.subarray(1 + curve.size)),
        d: b64u(dPadded),
      },
      format: "jwk",
    });
  }
  throw new SshKeyError(`unsupported OpenSSH key type ${type}`);
}

/** Parses an OpenSSH (unencrypted) or PEM (PKCS#8, PKCS#1, SEC1) private key. */
export function parsePrivateKey(text: string): SshPrivateKey {
  try {
    const key = text.includes(OPENSSH_BEGIN)
      ? parseOpenSsh(text)
      : createPrivateKey({ key: text, format: "pem" });
    return signer(key);
  } catch (err) {
    if (err instanceof SshKeyError) throw err;
    if (err instanceof SshFormatError) throw new SshKeyError(`malformed private key: ${err.message}`);
    throw new SshKeyError(
      `unreadable private key: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`,
    );
  }
}

export function generateEd25519(): SshPrivateKey {
  return signer(generateKeyPairSync("ed25519").privateKey);
}

/** An ed25519 key in the OpenSSH private key format (what ssh2 and `ssh -i` read). */
export function toOpenSshPrivateKey(key: SshPrivateKey, comment = ""): string {
  if (key.type !== "ssh-ed25519") throw new SshKeyError("only ed25519 keys are serialized");
  const jwk = key.privateKey.export({ format: "jwk" }) as JsonWebKey;
  const seed = fromB64u(jwk.d);
  const pub = fromB64u(jwk.x);
  const check = randomBytes(4).readUInt32BE();
  const priv = new SshWriter()
    .uint32(check)
    .uint32(check)
    .string("ssh-ed25519")
    .string(pub)
    .string(Buffer.concat([seed, pub]))
    .string(comment);
  let section = priv.toBuffer();
  const pad = (8 - (section.length % 8)) % 8;
  section = Buffer.concat([section, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([
    OPENSSH_MAGIC,
    new SshWriter()
      .string("none")
      .string("none")
      .string("")
      .uint32(1)
      .string(key.publicBlob)
      .string(section)
      .toBuffer(),
  ]).toString("base64");
  const lines = body.match(/.{1,70}/g) ?? [];
  return `${OPENSSH_BEGIN}\n${lines.join("\n")}\n${OPENSSH_END}\n`;
}

/** `type base64 [comment]`, as in authorized_keys and *.pub files. */
export function publicKeyLine(blob: Buffer, comment?: string): string {
  const type = new SshReader(blob).text();
  return `${type} ${blob.toString("base64")}${comment ? ` ${comment}` : ""}`;
}

/** OpenSSH's SHA256 fingerprint of a public-key blob: `SHA256:<base64, unpadded>`. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}
