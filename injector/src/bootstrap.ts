// Bootstrap TLS: the injector makes its own CA and serving certificate, keeps them in a Secret so
// every replica serves the same pair, and writes the CA into its MutatingWebhookConfiguration's
// caBundle. The chart can use cert-manager instead (then TLS comes from files, tls.ts).
import "reflect-metadata";
import { randomBytes, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import {
  AdmissionregistrationV1Api,
  ApiException,
  CoreV1Api,
  type KubeConfig,
  type V1Secret,
} from "@kubernetes/client-node";
import * as x509 from "@peculiar/x509";
import type { TlsMaterial } from "./tls.ts";

x509.cryptoProvider.set(webcrypto);

const EC_KEY: webcrypto.EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING: webcrypto.EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const DAY_MS = 86_400_000;

export interface CertificateBundle extends TlsMaterial {
  caCert: string;
  caKey: string;
}

export interface GenerateOptions {
  hosts: readonly string[];
  /** Lifetime of the serving certificate; default 365 days. The CA lives ten years. */
  validityDays?: number;
  /** Reuse this CA (renewal keeps the caBundle stable). */
  ca?: { cert: string; key: string };
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString("hex");
}

async function keyPem(key: webcrypto.CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

async function importCa(ca: { cert: string; key: string }): Promise<{
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
}> {
  const cert = new x509.X509Certificate(ca.cert);
  const privateKey = await webcrypto.subtle.importKey(
    "pkcs8",
    x509.PemConverter.decodeFirst(ca.key),
    EC_KEY,
    true,
    ["sign"],
  );
  const publicKey = await cert.publicKey.export(EC_KEY, ["verify"], webcrypto);
  return { cert, keys: { privateKey, publicKey } };
}

/** A CA (new unless given) and a serving certificate for `hosts` (DNS names and IP addresses). */
export async function generateCertificates(opts: GenerateOptions): Promise<CertificateBundle> {
  const now = Date.now();
  let ca: { cert: x509.X509Certificate; keys: webcrypto.CryptoKeyPair };
  let caKeyPem: string;
  if (opts.ca) {
    ca = await importCa(opts.ca);
    caKeyPem = opts.ca.key;
  } else {
    const keys = await webcrypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"]);
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: "CN=airlock-injector-ca",
      notBefore: new Date(now - 3_600_000),
      notAfter: new Date(now + 3650 * DAY_MS),
      keys,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    ca = { cert, keys };
    caKeyPem = await keyPem(keys.privateKey);
  }
  const keys = await webcrypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.hosts[0] ?? "airlock-injector"}`,
    issuer: ca.cert.subject,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(Math.min(now + (opts.validityDays ?? 365) * DAY_MS, ca.cert.notAfter.getTime())),
    publicKey: keys.publicKey,
    signingKey: ca.keys.privateKey,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(
        opts.hosts.map((h) => ({ type: isIP(h) ? ("ip" as const) : ("dns" as const), value: h })),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(ca.keys.publicKey),
    ],
  });
  return {
    caCert: ca.cert.toString("pem"),
    caKey: caKeyPem,
    cert: leaf.toString("pem"),
    key: await keyPem(keys.privateKey),
  };
}

/** The DNS names a Service-backed webhook is called by. */
export function serviceHosts(service: string, namespace: string): string[] {
  return [
    `${service}.${namespace}.svc`,
    `${service}.${namespace}.svc.cluster.local`,
    `${service}.${namespace}`,
    service,
  ];
}

/** Why a stored bundle must be renewed, or undefined if it is good. */
export function renewalReason(
  bundle: CertificateBundle,
  hosts: readonly string[],
  renewBeforeDays = 30,
): string | undefined {
  try {
    const leaf = new x509.X509Certificate(bundle.cert);
    const ca = new x509.X509Certificate(bundle.caCert);
    if (leaf.notAfter.getTime() - Date.now() < renewBeforeDays * DAY_MS) return "certificate expires soon";
    if (ca.notAfter.getTime() - Date.now() < renewBeforeDays * DAY_MS) return "CA expires soon";
    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
    const names = new Set((san?.names.items ?? []).map((n) => n.value));
    const missing = hosts.filter((h) => !names.has(h));
    if (missing.length) return `certificate lacks ${missing.join(", ")}`;
    return undefined;
  } catch (err) {
    return `stored certificate unreadable: ${(err as Error).message}`;
  }
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const unb64 = (s: string | undefined) => Buffer.from(s ?? "", "base64").toString("utf8");

function fromSecret(secret: V1Secret): CertificateBundle | undefined {
  const d = secret.data ?? {};
  if (!d["tls.crt"] || !d["tls.key"] || !d["ca.crt"] || !d["ca.key"]) return undefined;
  return {
    cert: unb64(d["tls.crt"]),
    key: unb64(d["tls.key"]),
    caCert: unb64(d["ca.crt"]),
    caKey: unb64(d["ca.key"]),
  };
}

function secretData(bundle: CertificateBundle): Record<string, string> {
  return {
    "tls.crt": b64(bundle.cert),
    "tls.key": b64(bundle.key),
    "ca.crt": b64(bundle.caCert),
    "ca.key": b64(bundle.caKey),
  };
}

function statusOf(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

export interface BootstrapOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  secretName: string;
  hosts: readonly string[];
  log?: (msg: string) => void;
}

/**
 * The shared serving bundle: read from the Secret, created if absent, renewed (same CA) if it
 * expires soon or lacks a host. Safe with several replicas: creation and renewal are
 * conditional writes, and a replica that loses the race adopts the winner's bundle.
 */
export async function ensureServingBundle(opts: BootstrapOptions): Promise<CertificateBundle> {
  const core = opts.kubeConfig.makeApiClient(CoreV1Api);
  const log = opts.log ?? (() => {});
  for (let attempt = 0; attempt < 5; attempt++) {
    let existing: V1Secret | undefined;
    try {
      existing = await core.readNamespacedSecret({ name: opts.secretName, namespace: opts.namespace });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    const stored = existing ? fromSecret(existing) : undefined;
    const why = stored ? renewalReason(stored, opts.hosts) : "no stored certificate";
    if (stored && !why) return stored;
    const ca = stored && !why?.startsWith("CA") ? { cert: stored.caCert, key: stored.caKey } : undefined;
    const bundle = await generateCertificates({ hosts: opts.hosts, ...(ca ? { ca } : {}) });
    try {
      if (!existing) {
        await core.createNamespacedSecret({
          namespace: opts.namespace,
          body: {
            metadata: {
              name: opts.secretName,
              labels: { "app.kubernetes.io/part-of": "airlock", "app.kubernetes.io/component": "injector" },
            },
            type: "Opaque",
            data: secretData(bundle),
          },
        });
      } else {
        await core.replaceNamespacedSecret({
          name: opts.secretName,
          namespace: opts.namespace,
          body: { ...existing, data: secretData(bundle) },
        });
      }
      log(`bootstrap TLS: wrote Secret ${opts.namespace}/${opts.secretName} (${why})`);
      return bundle;
    } catch (err) {
      // Another replica wrote first: read theirs.
      if (statusOf(err) !== 409) throw err;
    }
  }
  throw new Error(`bootstrap TLS: Secret ${opts.namespace}/${opts.secretName} keeps changing under us`);
}

/**
 * Sets caBundle on every webhook of the MutatingWebhookConfiguration. Returns true if it changed
 * anything.
 */
export async function patchCaBundle(opts: {
  kubeConfig: KubeConfig;
  webhookConfigName: string;
  caPem: string;
}): Promise<boolean> {
  const api = opts.kubeConfig.makeApiClient(AdmissionregistrationV1Api);
  const caBundle = b64(opts.caPem);
  for (let attempt = 0; attempt < 5; attempt++) {
    const config = await api.readMutatingWebhookConfiguration({ name: opts.webhookConfigName });
    const hooks = config.webhooks ?? [];
    if (hooks.every((w) => w.clientConfig.caBundle === caBundle)) return false;
    for (const w of hooks) w.clientConfig.caBundle = caBundle;
    try {
      await api.replaceMutatingWebhookConfiguration({ name: opts.webhookConfigName, body: config });
      return true;
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
    }
  }
  throw new Error(`MutatingWebhookConfiguration ${opts.webhookConfigName} keeps changing under us`);
}
