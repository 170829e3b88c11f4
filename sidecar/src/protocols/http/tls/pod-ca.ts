// The per-pod CA: created in memory at sidecar start (ECDSA P-256, short-lived, key not exportable),
// name-constrained to the HTTPS hosts of the policies in force, minting one leaf per SNI on demand.
import "reflect-metadata";
import { randomBytes, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";
import { LRUCache } from "lru-cache";
import {
  encodeNameConstraints,
  NAME_CONSTRAINTS_OID,
  type PermittedName,
  permits,
} from "./name-constraints.ts";

x509.cryptoProvider.set(webcrypto);

type CryptoKeyPair = webcrypto.CryptoKeyPair;
const EC_KEY: webcrypto.EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
const SIGNING: webcrypto.EcdsaParams = { name: "ECDSA", hash: "SHA-256" };
const HOUR_MS = 60 * 60 * 1000;
/** Backdating for clock skew between sidecar and agent containers (same node: small). */
const SKEW_MS = 5 * 60 * 1000;

export interface PodCaOptions {
  /** Host names (exact, or `*.suffix`) and IPs the policies name with HTTPS semantics. */
  hosts: readonly string[];
  /** CA lifetime; leaves never outlive it. Default 24 h. */
  lifetimeMs?: number;
  /** Leaf cache size (per SNI). Default 256. */
  maxLeaves?: number;
  /** Distinguishes CAs in the trust bundle and logs (e.g. the pod name). */
  label?: string;
}

export interface Leaf {
  name: string;
  certPem: string;
  /** PKCS#8 PEM, for `tls.createSecureContext` only; never written anywhere. */
  keyPem: string;
  /** The leaf followed by the CA, as a server sends it. */
  chainPem: string;
}

export class NameOutsideConstraintsError extends Error {
  override readonly name = "NameOutsideConstraintsError";
  readonly host: string;
  constructor(host: string) {
    super(`pod CA: no leaf for "${host}": it is not an HTTPS host of the policies in force`);
    this.host = host;
  }
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString("hex");
}

function normalizeHost(host: string): string {
  return host.trim().toLowerCase().replace(/\.$/, "");
}

/** Policy hosts → permitted subtrees: `*.x` → `.x` (subdomains only), an IP → that address, a name → itself. */
export function permittedNames(hosts: readonly string[]): PermittedName[] {
  const out = new Map<string, PermittedName>();
  for (const raw of hosts) {
    const h = normalizeHost(raw).replace(/^\[(.*)\]$/, "$1");
    if (h === "" || h === "*") throw new Error(`pod CA: host "${raw}" cannot be name-constrained`);
    if (isIP(h)) out.set(`ip:${h}`, { ip: h });
    else if (h.startsWith("*.")) out.set(`dns:${h.slice(1)}`, { dns: h.slice(1) });
    else if (h.includes("*"))
      throw new Error(`pod CA: host "${raw}": only a leading "*." wildcard is allowed`);
    else out.set(`dns:${h}`, { dns: h });
  }
  return [...out.values()];
}

export class PodCa {
  readonly certPem: string;
  readonly notAfter: Date;
  readonly permitted: readonly PermittedName[];
  readonly #hosts: ReadonlySet<string>;
  readonly #wildcards: readonly string[];
  readonly #cert: x509.X509Certificate;
  readonly #keys: CryptoKeyPair;
  readonly #leaves: LRUCache<string, Promise<Leaf>>;

  private constructor(
    cert: x509.X509Certificate,
    keys: CryptoKeyPair,
    hosts: readonly string[],
    maxLeaves: number,
  ) {
    this.#cert = cert;
    this.#keys = keys;
    this.certPem = cert.toString("pem");
    this.notAfter = cert.notAfter;
    this.permitted = permittedNames(hosts);
    const names = hosts.map((h) => normalizeHost(h).replace(/^\[(.*)\]$/, "$1"));
    this.#hosts = new Set(names.filter((h) => !h.startsWith("*.")));
    this.#wildcards = names.filter((h) => h.startsWith("*.")).map((h) => h.slice(1));
    this.#leaves = new LRUCache({ max: maxLeaves });
  }

  static async create(options: PodCaOptions): Promise<PodCa> {
    const permitted = permittedNames(options.hosts);
    if (permitted.length === 0) throw new Error("pod CA: no HTTPS hosts to constrain to");
    // extractable=false: the private key cannot leave this process's memory, not even to us.
    const keys = (await webcrypto.subtle.generateKey(EC_KEY, false, ["sign", "verify"])) as CryptoKeyPair;
    const now = Date.now();
    const label = (options.label ?? "pod").replace(/[\\,+"<>;=#]/g, "_");
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=Airlock pod CA ${label}, O=Airlock`,
      notBefore: new Date(now - SKEW_MS),
      notAfter: new Date(now + (options.lifetimeMs ?? 24 * HOUR_MS)),
      keys,
      signingAlgorithm: SIGNING,
      extensions: [
        // pathLen 0: the CA can sign leaves only, never another CA.
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.Extension(NAME_CONSTRAINTS_OID, true, encodeNameConstraints(permitted)),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    return new PodCa(cert, keys, options.hosts, options.maxLeaves ?? 256);
  }

  /** Whether a leaf may be minted for `host`: exactly a policy host (or under a `*.` one) and inside the constraints. */
  covers(host: string): boolean {
    const h = normalizeHost(host);
    const named =
      this.#hosts.has(h) ||
      this.#wildcards.some((w) => h.endsWith(w) && !h.slice(0, -w.length).includes("."));
    return named && permits(this.permitted, h);
  }

  /** The leaf for `host` (cached); rejects with {@link NameOutsideConstraintsError} for any other name. */
  leaf(host: string): Promise<Leaf> {
    const h = normalizeHost(host);
    if (!this.covers(h)) return Promise.reject(new NameOutsideConstraintsError(host));
    const cached = this.#leaves.get(h);
    if (cached) return cached;
    const minted = this.#mint(h);
    this.#leaves.set(h, minted);
    minted.catch(() => this.#leaves.delete(h));
    return minted;
  }

  get cachedLeaves(): number {
    return this.#leaves.size;
  }

  async #mint(host: string): Promise<Leaf> {
    const keys = (await webcrypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"])) as CryptoKeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${host}`,
      issuer: this.#cert.subject,
      notBefore: new Date(now - SKEW_MS),
      notAfter: new Date(Math.min(this.notAfter.getTime(), now + 24 * HOUR_MS)),
      publicKey: keys.publicKey,
      signingKey: this.#keys.privateKey,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension([{ type: isIP(host) ? "ip" : "dns", value: host }], false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(this.#keys.publicKey),
      ],
    });
    const keyPem = x509.PemConverter.encode(
      await webcrypto.subtle.exportKey("pkcs8", keys.privateKey),
      "PRIVATE KEY",
    );
    const certPem = cert.toString("pem");
    return { name: host, certPem, keyPem, chainPem: `${certPem}\n${this.certPem}\n` };
  }
}
