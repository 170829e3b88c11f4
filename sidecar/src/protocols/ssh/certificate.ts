// OpenSSH user certificates (PROTOCOL.certkeys), signed in-process per session: a fresh ed25519
// key, a certificate over it from the CA key held in a Secret, valid for minutes. No standing user
// key exists, and nothing but node:crypto is needed (no ssh-keygen in the sidecar image).
import { randomBytes } from "node:crypto";
import { generateEd25519, type SshPrivateKey } from "./keys.ts";
import { packStrings, SshReader, SshWriter, unpackStrings } from "./wire.ts";

export const ED25519_CERT_TYPE = "ssh-ed25519-cert-v01@openssh.com";
const USER_CERT = 1;
/** Clock skew allowance: certificates start this long in the past. */
export const DEFAULT_BACKDATE_SECONDS = 30;

/** Certificate permissions (OpenSSH "extensions"); everything not listed is not permitted. */
export interface CertificatePermissions {
  pty?: boolean;
  portForwarding?: boolean;
  agentForwarding?: boolean;
  x11Forwarding?: boolean;
  userRc?: boolean;
}

export interface CertificateRequest {
  ca: SshPrivateKey;
  /** The key to certify; a fresh ed25519 key by default. */
  key?: SshPrivateKey;
  principals: readonly string[];
  validitySeconds: number;
  /** Logged by sshd on login ("ID ..."): names the pod, user and session. */
  keyId: string;
  permissions?: CertificatePermissions;
  serial?: bigint;
  backdateSeconds?: number;
  now?: Date;
}

export interface SignedCertificate {
  /** The certified private key (use it with the certificate, never alone). */
  key: SshPrivateKey;
  certType: string;
  /** The certificate blob, what `authPK` presents as the public key. */
  blob: Buffer;
  /** `ssh-ed25519-cert-v01@openssh.com <base64> <keyId>`, the `-cert.pub` file format. */
  line: string;
  serial: bigint;
  keyId: string;
  principals: readonly string[];
  extensions: readonly string[];
  validAfter: Date;
  validBefore: Date;
}

export function extensionNames(p: CertificatePermissions = {}): string[] {
  const out: string[] = [];
  if (p.x11Forwarding) out.push("permit-X11-forwarding");
  if (p.agentForwarding) out.push("permit-agent-forwarding");
  if (p.portForwarding) out.push("permit-port-forwarding");
  if (p.pty) out.push("permit-pty");
  if (p.userRc) out.push("permit-user-rc");
  // OpenSSH requires lexical order (byte order: "permit-X11..." sorts first).
  return out.sort();
}

export function signUserCertificate(req: CertificateRequest): SignedCertificate {
  const key = req.key ?? generateEd25519();
  if (key.type !== "ssh-ed25519") throw new Error("per-session certificates certify ed25519 keys only");
  if (req.principals.length === 0) throw new Error("a certificate needs at least one principal");
  if (!(req.validitySeconds > 0)) throw new Error("certificate validity must be positive");
  const now = Math.floor((req.now ?? new Date()).getTime() / 1000);
  const validAfter = now - (req.backdateSeconds ?? DEFAULT_BACKDATE_SECONDS);
  const validBefore = now + Math.ceil(req.validitySeconds);
  const serial = req.serial ?? randomBytes(8).readBigUInt64BE();
  const extensions = extensionNames(req.permissions);
  const pk = new SshReader(key.publicBlob);
  pk.text(); // "ssh-ed25519"
  const rawPublic = pk.string();

  const tbs = new SshWriter()
    .string(ED25519_CERT_TYPE)
    .string(randomBytes(32))
    .string(rawPublic)
    .uint64(serial)
    .uint32(USER_CERT)
    .string(req.keyId)
    .string(packStrings(req.principals))
    .uint64(BigInt(validAfter))
    .uint64(BigInt(validBefore))
    .string("") // critical options: none
    .string(packStrings(extensions.flatMap((e) => [e, ""])))
    .string("") // reserved
    .string(req.ca.publicBlob)
    .toBuffer();
  const blob = new SshWriter().raw(tbs).string(req.ca.sign(tbs)).toBuffer();
  return {
    key,
    certType: ED25519_CERT_TYPE,
    blob,
    line: `${ED25519_CERT_TYPE} ${blob.toString("base64")} ${req.keyId.replace(/\s+/g, "_")}`,
    serial,
    keyId: req.keyId,
    principals: [...req.principals],
    extensions,
    validAfter: new Date(validAfter * 1000),
    validBefore: new Date(validBefore * 1000),
  };
}

export interface ParsedCertificate {
  certType: string;
  /** The certified ed25519 key (its raw 32 bytes). */
  publicKey: Buffer;
  serial: bigint;
  type: "user" | "host";
  keyId: string;
  principals: string[];
  validAfter: Date;
  validBefore: Date;
  criticalOptions: string[];
  extensions: string[];
  signatureKey: Buffer;
  signatureAlgorithm: string;
}

/** Reads an ed25519 user certificate back (tests, diagnostics). Does not verify the signature. */
export function parseCertificate(blob: Buffer): ParsedCertificate {
  const r = new SshReader(blob);
  const certType = r.text();
  if (certType !== ED25519_CERT_TYPE) throw new Error(`unsupported certificate type ${certType}`);
  r.string(); // nonce
  const publicKey = r.string();
  const serial = r.uint64();
  const type = r.uint32() === USER_CERT ? "user" : "host";
  const keyId = r.text();
  const principals = unpackStrings(r.string()).map((b) => b.toString("utf8"));
  const validAfter = new Date(Number(r.uint64()) * 1000);
  const validBefore = new Date(Number(r.uint64()) * 1000);
  const critical = unpackStrings(r.string()).filter((_, i) => i % 2 === 0);
  const extensions = unpackStrings(r.string())
    .filter((_, i) => i % 2 === 0)
    .map((b) => b.toString("utf8"));
  r.string(); // reserved
  const signatureKey = r.string();
  const signatureAlgorithm = new SshReader(r.string()).text();
  return {
    certType,
    publicKey,
    serial,
    type,
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions: critical.map((b) => b.toString("utf8")),
    extensions,
    signatureKey,
    signatureAlgorithm,
  };
}
