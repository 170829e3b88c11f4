// Test PKI for the envtest control plane: a CA, the API server's serving certificate, client
// certificates (CN = user, O = group, which is how kube-apiserver's x509 authenticator reads them)
// and the service-account signing key pair. Everything is ECDSA P-256 and written as PEM.
import "reflect-metadata";
import { generateKeyPairSync, randomBytes, webcrypto } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const crypto = webcrypto;
x509.cryptoProvider.set(crypto);

const EC_KEY: webcrypto.EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING: webcrypto.EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const DAY_MS = 24 * 60 * 60 * 1000;

/** File names inside a PKI directory. */
export const PKI_FILES = {
  caCert: "ca.crt",
  caKey: "ca.key",
  servingCert: "apiserver.crt",
  servingKey: "apiserver.key",
  serviceAccountKey: "sa.key",
  serviceAccountPub: "sa.pub",
  adminCert: "admin.crt",
  adminKey: "admin.key",
} as const;

export interface CertificateAuthority {
  cert: x509.X509Certificate;
  certPem: string;
  keys: CryptoKeyPair;
}

export interface IssuedCert {
  certPem: string;
  /** PKCS#8 PEM ("PRIVATE KEY"). */
  keyPem: string;
}

export interface Pki {
  dir: string;
  ca: CertificateAuthority;
  caCertPath: string;
  servingCertPath: string;
  servingKeyPath: string;
  serviceAccountKeyPath: string;
  serviceAccountPubPath: string;
  admin: IssuedCert & { certPath: string; keyPath: string };
}

function serial(): string {
  // Positive 16-byte serial number (high bit cleared).
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString("hex");
}

function validity(): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  // Backdate a little: clock skew between the test and the API server is zero, but be safe.
  return { notBefore: new Date(now - 60 * 60 * 1000), notAfter: new Date(now + 30 * DAY_MS) };
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"]);
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

/** Escapes a value for an RFC 4514 distinguished-name string. */
function dnValue(value: string): string {
  return value.replace(/[\\,+"<>;=#]/g, (c) => `\\${c}`).replace(/^ | $/g, (c) => `\\${c}`);
}

export async function createCA(commonName = "airlock-envtest-ca"): Promise<CertificateAuthority> {
  const keys = await generateKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${dnValue(commonName)}`,
    ...validity(),
    keys,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, certPem: cert.toString("pem"), keys };
}

/** Loads a CA written by {@link createPki} (certificate and PKCS#8 key) so other processes can issue certs. */
export async function loadCA(dir: string): Promise<CertificateAuthority> {
  const certPem = await readFile(join(dir, PKI_FILES.caCert), "utf8");
  const keyPem = await readFile(join(dir, PKI_FILES.caKey), "utf8");
  const cert = new x509.X509Certificate(certPem);
  const privateKey = await crypto.subtle.importKey(
    "pkcs8",
    x509.PemConverter.decodeFirst(keyPem),
    EC_KEY,
    true,
    ["sign"],
  );
  const publicKey = await cert.publicKey.export(EC_KEY, ["verify"], crypto);
  return { cert, certPem, keys: { privateKey, publicKey } };
}

interface IssueOptions {
  subject: string;
  sans?: x509.JsonGeneralNames;
  usages: x509.ExtendedKeyUsageType[];
}

async function issue(ca: CertificateAuthority, opts: IssueOptions): Promise<IssuedCert> {
  const keys = await generateKeys();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension(opts.usages, false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
  ];
  if (opts.sans && opts.sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(opts.sans));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: opts.subject,
    issuer: ca.cert.subject,
    ...validity(),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGNING,
    extensions,
  });
  return { certPem: cert.toString("pem"), keyPem: await privateKeyPem(keys.privateKey) };
}

/**
 * A client certificate as kube-apiserver's x509 authenticator reads it: CN is the user name,
 * each O is a group.
 */
export async function issueClientCert(
  ca: CertificateAuthority,
  user: string,
  groups: readonly string[] = [],
): Promise<IssuedCert> {
  const subject = [...groups.map((g) => `O=${dnValue(g)}`), `CN=${dnValue(user)}`].join(", ");
  return issue(ca, { subject, usages: [x509.ExtendedKeyUsage.clientAuth] });
}

const IP_RE = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)$/;

/**
 * A TLS serving certificate for the given host names and IP addresses (for the API server, or
 * later for webhook servers the API server calls).
 */
export async function issueServingCert(
  ca: CertificateAuthority,
  hosts: readonly string[],
  commonName = hosts[0] ?? "localhost",
): Promise<IssuedCert> {
  const sans: x509.JsonGeneralNames = hosts.map((h) => ({ type: IP_RE.test(h) ? "ip" : "dns", value: h }));
  return issue(ca, {
    subject: `CN=${dnValue(commonName)}`,
    sans,
    usages: [x509.ExtendedKeyUsage.serverAuth],
  });
}

async function writePem(path: string, pem: string, secret: boolean): Promise<void> {
  await writeFile(path, pem.endsWith("\n") ? pem : `${pem}\n`, { mode: secret ? 0o600 : 0o644 });
}

/**
 * Creates the whole PKI for one control plane in `dir`: CA, API server serving cert for
 * 127.0.0.1/localhost/::1 (and `extraHosts`), the service-account key pair and an admin client cert
 * (CN=envtest-admin, O=system:masters).
 */
export async function createPki(dir: string, extraHosts: readonly string[] = []): Promise<Pki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = await createCA();
  const p = (name: string) => join(dir, name);
  await writePem(p(PKI_FILES.caCert), ca.certPem, false);
  await writePem(p(PKI_FILES.caKey), await privateKeyPem(ca.keys.privateKey), true);

  const hosts = [...new Set(["127.0.0.1", "localhost", "::1", ...extraHosts])];
  const serving = await issueServingCert(ca, hosts, "kube-apiserver");
  await writePem(p(PKI_FILES.servingCert), serving.certPem, false);
  await writePem(p(PKI_FILES.servingKey), serving.keyPem, true);

  const sa = generateKeyPairSync("ec", {
    namedCurve: "prime256v1",
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
    publicKeyEncoding: { type: "spki", format: "pem" },
  });
  await writePem(p(PKI_FILES.serviceAccountKey), sa.privateKey, true);
  await writePem(p(PKI_FILES.serviceAccountPub), sa.publicKey, false);

  const admin = await issueClientCert(ca, "envtest-admin", ["system:masters"]);
  await writePem(p(PKI_FILES.adminCert), admin.certPem, false);
  await writePem(p(PKI_FILES.adminKey), admin.keyPem, true);

  return {
    dir,
    ca,
    caCertPath: p(PKI_FILES.caCert),
    servingCertPath: p(PKI_FILES.servingCert),
    servingKeyPath: p(PKI_FILES.servingKey),
    serviceAccountKeyPath: p(PKI_FILES.serviceAccountKey),
    serviceAccountPubPath: p(PKI_FILES.serviceAccountPub),
    admin: { ...admin, certPath: p(PKI_FILES.adminCert), keyPath: p(PKI_FILES.adminKey) },
  };
}
