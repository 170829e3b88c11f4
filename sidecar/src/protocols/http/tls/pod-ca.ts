// The per-pod CA: created in memory at sidecar start (ECDSA P-256, short-lived, key not exportable),
// name-constrained to the HTTPS hosts of the policies in force, minting one leaf per SNI on demand.
// Renewal (a successor CA published ahead, the old one kept until its leaves expire) is
// pod-ca-keeper.ts; here a CA only refuses to serve anything at or near its own expiry.
import "reflect-metadata";
import { randomBytes, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import * as x509 from "@peculiar/x509";
import { LRUCache } from "lru-cache";
import { expiryMargin, SKEW_MS } from "./ca-timing.ts";
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

export interface PodCaOptions {
  /** Host names (exact, or `*.suffix`) and IPs the policies name with HTTPS semantics. */
  hosts: readonly string[];
  /**
   * Names no leaf may ever be minted for (the hosts and aliases of passthrough connections):
   * written as excluded subtrees, which a verifier applies over any permitted one, and refused by
   * `leaf()` whatever `hosts` says.
   */
  excluded?: readonly string[];
  /** CA lifetime; leaves never outlive it. Default 24 h. */
  lifetimeMs?: number;
  /** Leaf cache size (per SNI). Default 256. */
  maxLeaves?: number;
  /** Distinguishes CAs in the trust bundle and logs (e.g. the pod name). */
  label?: string;
  /** When this CA starts signing (a successor is minted ahead of it); its validity ends `lifetimeMs` later. Default: now. */
  activeFrom?: number;
  /** Leaf lifetime cap (leaves never outlive the CA either). Default 24 h. */
  leafLifetimeMs?: number;
  /** Clock (ms since the epoch), injectable for tests. Default `Date.now`. */
  now?: () => number;
}

export interface Leaf {
  name: string;
  certPem: string;
  /** PKCS#8 PEM, for `tls.createSecureContext` only; never written anywhere. */
  keyPem: string;
  /** The leaf followed by the CA, as a server sends it. */
  chainPem: string;
  notAfter: Date;
}

/** The CA is at (or within the safety margin of) its expiry: it serves nothing any more. */
export { expiryMargin };

export class CaExpiredError extends Error {
  override readonly name = "CaExpiredError";
  constructor(notAfter: Date) {
    super(`pod CA expired (notAfter ${notAfter.toISOString()}): no leaf is served`);
  }
}

interface CachedLeaf {
  leaf: Promise<Leaf>;
  /** After this instant (ms) the leaf is re-minted rather than served. */
  serveUntil: number;
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

/** X.509 times have whole seconds: round down so the certificate says exactly what we computed. */
function wholeSeconds(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
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
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Hex serial number: names this CA in logs (never key material). */
  readonly serialNumber: string;
  readonly permitted: readonly PermittedName[];
  readonly excluded: readonly PermittedName[];
  readonly #hosts: ReadonlySet<string>;
  readonly #wildcards: readonly string[];
  readonly #cert: x509.X509Certificate;
  readonly #keys: CryptoKeyPair;
  readonly #leaves: LRUCache<string, CachedLeaf>;
  readonly #now: () => number;
  readonly #leafLifetimeMs: number;
  readonly #margin: number;

  private constructor(
    cert: x509.X509Certificate,
    keys: CryptoKeyPair,
    hosts: readonly string[],
    excluded: readonly string[],
    options: { maxLeaves: number; now: () => number; leafLifetimeMs: number; margin: number },
  ) {
    this.#cert = cert;
    this.#keys = keys;
    this.certPem = cert.toString("pem");
    this.notBefore = cert.notBefore;
    this.notAfter = cert.notAfter;
    this.serialNumber = cert.serialNumber;
    this.#now = options.now;
    this.#leafLifetimeMs = options.leafLifetimeMs;
    this.#margin = options.margin;
    this.permitted = permittedNames(hosts);
    this.excluded = permittedNames(excluded);
    const names = hosts.map((h) => normalizeHost(h).replace(/^\[(.*)\]$/, "$1"));
    this.#hosts = new Set(names.filter((h) => !h.startsWith("*.")));
    this.#wildcards = names.filter((h) => h.startsWith("*.")).map((h) => h.slice(1));
    this.#leaves = new LRUCache({ max: options.maxLeaves });
  }

  static async create(options: PodCaOptions): Promise<PodCa> {
    const permitted = permittedNames(options.hosts);
    const excluded = permittedNames(options.excluded ?? []);
    if (permitted.length === 0) throw new Error("pod CA: no HTTPS hosts to constrain to");
    // extractable=false: the private key cannot leave this process's memory, not even to us.
    const keys = (await webcrypto.subtle.generateKey(EC_KEY, false, ["sign", "verify"])) as CryptoKeyPair;
    const clock = options.now ?? Date.now;
    const now = clock();
    const lifetimeMs = options.lifetimeMs ?? 24 * HOUR_MS;
    const label = (options.label ?? "pod").replace(/[\\,+"<>;=#]/g, "_");
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=Airlock pod CA ${label}, O=Airlock`,
      notBefore: new Date(now - SKEW_MS),
      notAfter: new Date(wholeSeconds((options.activeFrom ?? now) + lifetimeMs)),
      keys,
      signingAlgorithm: SIGNING,
      extensions: [
        // pathLen 0: the CA can sign leaves only, never another CA.
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.Extension(NAME_CONSTRAINTS_OID, true, encodeNameConstraints(permitted, excluded)),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    return new PodCa(cert, keys, options.hosts, options.excluded ?? [], {
      maxLeaves: options.maxLeaves ?? 256,
      now: clock,
      leafLifetimeMs: options.leafLifetimeMs ?? 24 * HOUR_MS,
      margin: expiryMargin(lifetimeMs),
    });
  }

  /**
   * Whether a leaf may be minted for `host`: exactly a policy host (or under a `*.` one), inside the
   * permitted subtrees and outside the excluded ones.
   */
  covers(host: string): boolean {
    const h = normalizeHost(host);
    const named =
      this.#hosts.has(h) ||
      this.#wildcards.some((w) => h.endsWith(w) && !h.slice(0, -w.length).includes("."));
    return named && permits(this.permitted, h) && !permits(this.excluded, h);
  }

  /** Whether this CA may still serve leaves (it is not within the margin of its expiry). */
  usable(): boolean {
    return this.#now() < this.notAfter.getTime() - this.#margin;
  }

  /**
   * The leaf for `host` (cached while it is not near its expiry); rejects with
   * {@link NameOutsideConstraintsError} for any other name and {@link CaExpiredError} once this CA
   * is near its end, so an expired leaf is never served.
   */
  leaf(host: string): Promise<Leaf> {
    const h = normalizeHost(host);
    if (!this.covers(h)) return Promise.reject(new NameOutsideConstraintsError(host));
    const now = this.#now();
    if (now >= this.notAfter.getTime() - this.#margin)
      return Promise.reject(new CaExpiredError(this.notAfter));
    const cached = this.#leaves.get(h);
    if (cached && now < cached.serveUntil) return cached.leaf;
    // Absent, or near its notAfter: a fresh leaf replaces the entry (the expired one is dropped).
    const notAfter = wholeSeconds(Math.min(this.notAfter.getTime(), now + this.#leafLifetimeMs));
    const minted = this.#mint(h, now, notAfter);
    const entry = { leaf: minted, serveUntil: notAfter - this.#margin };
    this.#leaves.set(h, entry);
    minted.catch(() => {
      if (this.#leaves.get(h) === entry) this.#leaves.delete(h);
    });
    return minted;
  }

  get cachedLeaves(): number {
    return this.#leaves.size;
  }

  /** Drops cached leaves that may no longer be served (their keys go with them). */
  dropExpiredLeaves(): number {
    const now = this.#now();
    let dropped = 0;
    for (const [name, entry] of this.#leaves.entries())
      if (now >= entry.serveUntil) {
        this.#leaves.delete(name);
        dropped++;
      }
    return dropped;
  }

  async #mint(host: string, now: number, notAfter: number): Promise<Leaf> {
    const keys = (await webcrypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"])) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      // No CN for an address: OpenSSL checks a CN that looks like a host name against the CA's
      // DNS constraints, so CN=127.0.0.1 under a CA that also permits names fails verification
      // ("permitted subtree violation"); clients match the SAN.
      subject: isIP(host) ? "O=Airlock" : `CN=${host}`,
      issuer: this.#cert.subject,
      notBefore: new Date(now - SKEW_MS),
      notAfter: new Date(notAfter),
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
    return {
      name: host,
      certPem,
      keyPem,
      chainPem: `${certPem}\n${this.certPem}\n`,
      notAfter: cert.notAfter,
    };
  }
}
