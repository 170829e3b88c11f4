// The sidecar's SSH connection to the upstream: host key checked against the connection's
// known_hosts Secret (no entry, a different key or a revoked key: refused), then authenticated
// with a per-session certificate — signed by the CA key in the credentials Secret, or by Vault's
// SSH secrets engine (credentials.vault) — or with the private key from that Secret.
import { Client, type ClientChannel, type ConnectConfig } from "ssh2";
import { parseDuration } from "../../../../api/src/index.ts";
import { CredentialError, type CredentialSources } from "../../credentials/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { SecretStore } from "../../runtime/secrets.ts";
import { certificateKey, enableCertificateAuth } from "./cert-auth.ts";
import {
  type CertificatePermissions,
  ED25519_CERT_TYPE,
  extensionNames,
  parseCertificate,
  type SignedCertificate,
  signUserCertificate,
} from "./certificate.ts";
import { fingerprint, generateEd25519, parsePrivateKey } from "./keys.ts";
import { knownHostsName, parseKnownHosts } from "./known-hosts.ts";
import { SshReader } from "./wire.ts";

export type UpstreamErrorCode =
  | "no_credentials"
  | "secret_unavailable"
  | "vault_unavailable"
  | "vault_refused"
  | "bad_key"
  | "no_known_hosts"
  | "host_key_unknown"
  | "host_key_mismatch"
  | "host_key_revoked"
  | "auth_failed"
  | "connect_failed"
  | "timeout";

export class UpstreamError extends Error {
  readonly code: UpstreamErrorCode;
  constructor(code: UpstreamErrorCode, message: string) {
    super(message);
    this.name = "UpstreamError";
    this.code = code;
  }
}

export interface UpstreamRequest {
  connection: CompiledConnection;
  secrets: SecretStore;
  /** The certificate's key id: names the pod, user and session (sshd logs it on login). */
  keyId: string;
  /** Certificate extensions: what the policy allows this session at all. */
  permissions: CertificatePermissions;
  connectTimeoutMs: number;
  /** The credential sources (Vault signs the certificate when the connection has credentials.vault). */
  credentials?: CredentialSources;
}

export interface Upstream {
  client: Client;
  auth: "certificate" | "key";
  certificate?: Pick<SignedCertificate, "serial" | "keyId" | "principals" | "extensions" | "validBefore">;
  hostKey: string;
}

export const DEFAULT_CERT_VALIDITY = "5m";

async function secret(secrets: SecretStore, name: string, key: string, what: string): Promise<string> {
  try {
    return await secrets.get(name, key);
  } catch (err) {
    throw new UpstreamError(
      "secret_unavailable",
      `${what} (secret ${name} key ${key}) is unavailable: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

type CertificateSpec = NonNullable<
  NonNullable<NonNullable<CompiledConnection["spec"]["credentials"]>["ssh"]>["certificate"]
>;

/**
 * A fresh ed25519 key signed by Vault's SSH secrets engine (POST <mount>/sign/<role>). Vault's
 * role decides what it signs; what comes back is held to what was asked — a user certificate for
 * our key, the principals and extensions the policy allows, no longer than the validity — and
 * refused otherwise (a role's default_extensions could grant a pty the policy never allows).
 */
async function vaultCertificate(req: UpstreamRequest, spec: CertificateSpec): Promise<SignedCertificate> {
  const connection = req.connection.spec;
  const source = req.credentials?.forConnection(connection);
  if (!source)
    throw new UpstreamError("no_credentials", `connection ${connection.name} has no credential source`);
  const key = generateEd25519();
  const validitySeconds = parseDuration(spec.validity ?? DEFAULT_CERT_VALIDITY) / 1000;
  const extensions = extensionNames(req.permissions);
  let signed: string;
  try {
    const held = await source.acquire({
      session: req.keyId,
      keys: ["signed_key"],
      body: {
        public_key: `ssh-ed25519 ${key.publicBlob.toString("base64")}`,
        cert_type: "user",
        valid_principals: spec.principals.join(","),
        ttl: `${validitySeconds}s`,
        key_id: req.keyId,
        extensions: Object.fromEntries(extensions.map((e) => [e, ""])),
      },
    });
    signed = held.get("signed_key");
    held.release();
  } catch (err) {
    const e = err instanceof CredentialError ? err : undefined;
    throw new UpstreamError(
      e?.reason === "refused" ? "vault_refused" : "vault_unavailable",
      `Vault did not sign the session certificate: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const [type, b64] = signed.trim().split(/\s+/);
  const blob = Buffer.from(b64 ?? "", "base64");
  let parsed: ReturnType<typeof parseCertificate>;
  try {
    if (type !== ED25519_CERT_TYPE) throw new Error(`a ${type} certificate`);
    parsed = parseCertificate(blob);
  } catch (err) {
    throw new UpstreamError("vault_refused", `Vault's signed key does not parse: ${(err as Error).message}`);
  }
  const problem = certificateProblem(parsed, key.publicBlob, spec.principals, extensions, validitySeconds);
  if (problem)
    throw new UpstreamError("vault_refused", `Vault signed ${problem}; the sidecar does not use it`);
  return {
    key,
    certType: ED25519_CERT_TYPE,
    blob,
    line: `${ED25519_CERT_TYPE} ${b64} ${parsed.keyId.replace(/\s+/g, "_")}`,
    serial: parsed.serial,
    keyId: parsed.keyId,
    principals: parsed.principals,
    extensions: parsed.extensions,
    validAfter: parsed.validAfter,
    validBefore: parsed.validBefore,
  };
}

/** What in a certificate Vault signed goes beyond the request (undefined: nothing). */
export function certificateProblem(
  cert: ReturnType<typeof parseCertificate>,
  publicBlob: Buffer,
  principals: readonly string[],
  extensions: readonly string[],
  validitySeconds: number,
  now = Date.now(),
): string | undefined {
  if (cert.type !== "user") return "a host certificate";
  // Ours is `string "ssh-ed25519", string key`.
  const ours = new SshReader(publicBlob);
  ours.text();
  if (!cert.publicKey.equals(ours.string())) return "another key than the session's";
  if (cert.principals.length === 0) return "a certificate valid for every principal";
  const extra = cert.principals.filter((p) => !principals.includes(p));
  if (extra.length) return `principals the policy does not name (${extra.join(", ")})`;
  const more = cert.extensions.filter((e) => !extensions.includes(e));
  if (more.length)
    return `extensions the policy does not allow (${more.join(", ")}: check the role's default_extensions)`;
  if (cert.validBefore.getTime() - now > (validitySeconds + 60) * 1000)
    return `a certificate valid until ${cert.validBefore.toISOString()}, longer than the ${validitySeconds} s asked`;
  return undefined;
}

export async function connectUpstream(req: UpstreamRequest): Promise<Upstream> {
  const spec = req.connection.spec;
  const creds = spec.credentials;
  const ssh = creds?.ssh;
  if (!creds || !ssh)
    throw new UpstreamError("no_credentials", `connection ${spec.name} has no credentials.ssh`);
  const secretRef = creds.secretRef;
  if (!secretRef && !creds.vault)
    throw new UpstreamError("no_credentials", `connection ${spec.name} has no credentials.secretRef`);
  if (!spec.knownHosts)
    throw new UpstreamError(
      "no_known_hosts",
      `connection ${spec.name} has no knownHosts: host keys are always verified`,
    );
  const { host, port } = spec.target;
  const known = parseKnownHosts(
    await secret(req.secrets, spec.knownHosts.name, spec.knownHosts.key, "known_hosts"),
    host,
    port,
  );
  if (known.keys.length === 0)
    throw new UpstreamError("host_key_unknown", `known_hosts has no key for ${knownHostsName(host, port)}`);

  let key: ReturnType<typeof certificateKey> | string;
  let auth: Upstream["auth"];
  let cert: SignedCertificate | undefined;
  try {
    if (ssh.certificate && creds.vault) {
      cert = await vaultCertificate(req, ssh.certificate);
      key = certificateKey(cert);
      auth = "certificate";
    } else if (ssh.certificate && secretRef && ssh.certificate.caKey) {
      const ca = parsePrivateKey(
        await secret(req.secrets, secretRef.name, ssh.certificate.caKey, "the SSH CA key"),
      );
      cert = signUserCertificate({
        ca,
        principals: ssh.certificate.principals,
        validitySeconds: parseDuration(ssh.certificate.validity ?? DEFAULT_CERT_VALIDITY) / 1000,
        keyId: req.keyId,
        permissions: req.permissions,
      });
      key = certificateKey(cert);
      auth = "certificate";
    } else if (ssh.privateKeyKey && secretRef) {
      const text = await secret(req.secrets, secretRef.name, ssh.privateKeyKey, "the SSH private key");
      parsePrivateKey(text); // fails early, with a clear message, on keys we cannot use
      key = text;
      auth = "key";
    } else throw new UpstreamError("no_credentials", "credentials.ssh needs certificate or privateKeyKey");
  } catch (err) {
    if (err instanceof UpstreamError) throw err;
    throw new UpstreamError("bad_key", err instanceof Error ? err.message : String(err));
  }

  const client = new Client();
  let hostKeyProblem: { code: UpstreamErrorCode; message: string } | undefined;
  let presented = "";
  const config: ConnectConfig = {
    host,
    port,
    username: ssh.username,
    readyTimeout: req.connectTimeoutMs,
    keepaliveInterval: 30_000,
    algorithms: {
      serverHostKey: known.algorithms as NonNullable<ConnectConfig["algorithms"]>["serverHostKey"],
    },
    hostVerifier: (blob: Buffer) => {
      presented = fingerprint(blob);
      const verdict = known.check(blob);
      if (verdict === "ok") return true;
      hostKeyProblem =
        verdict === "revoked"
          ? { code: "host_key_revoked", message: `upstream host key ${presented} is revoked in known_hosts` }
          : {
              code: "host_key_mismatch",
              message: `upstream host key ${presented} does not match known_hosts for ${knownHostsName(host, port)}`,
            };
      return false;
    },
    authHandler: [{ type: "publickey", username: ssh.username, key } as never],
  };

  return new Promise<Upstream>((resolve, reject) => {
    const fail = (err: Error & { level?: string }) => {
      client.removeAllListeners("ready");
      client.on("error", () => undefined);
      client.end();
      if (hostKeyProblem) return reject(new UpstreamError(hostKeyProblem.code, hostKeyProblem.message));
      if (err.level === "client-authentication")
        return reject(
          new UpstreamError(
            "auth_failed",
            auth === "certificate"
              ? `the upstream refused the session certificate for ${ssh.username} (principals ${ssh.certificate?.principals.join(",")})`
              : `the upstream refused the private key for ${ssh.username}`,
          ),
        );
      if (err.level === "client-timeout" || /timed out/i.test(err.message))
        return reject(new UpstreamError("timeout", `connecting to ${host}:${port} timed out`));
      reject(new UpstreamError("connect_failed", `cannot connect to ${host}:${port}: ${err.message}`));
    };
    client.once("error", fail);
    client.once("ready", () => {
      client.off("error", fail);
      client.on("error", () => undefined); // later errors surface as channel/close events
      resolve({
        client,
        auth,
        hostKey: presented,
        ...(cert
          ? {
              certificate: {
                serial: cert.serial,
                keyId: cert.keyId,
                principals: cert.principals,
                extensions: cert.extensions,
                validBefore: cert.validBefore,
              },
            }
          : {}),
      });
    });
    client.connect(config);
    if (auth === "certificate") enableCertificateAuth(client);
  });
}

export type { ClientChannel };
