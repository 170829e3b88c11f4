import "reflect-metadata";
import { execFileSync } from "node:child_process";
import { randomBytes, webcrypto } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createServer, rootCertificates } from "node:tls";
import * as x509 from "@peculiar/x509";
import { describe, expect, it } from "vitest";
import { encodeNameConstraints, NAME_CONSTRAINTS_OID, permits } from "./name-constraints.ts";
import { CaExpiredError, NameOutsideConstraintsError, PodCa, permittedNames } from "./pod-ca.ts";
import { JAVA_TRUSTSTORE_FILE, writeTrustBundle } from "./trust-bundle.ts";

const dir = mkdtempSync(join(tmpdir(), "airlock-pod-ca-"));

function opensslVerify(bundle: string, leafPem: string, host: string): { ok: boolean; out: string } {
  const leafPath = join(dir, `leaf-${randomBytes(4).toString("hex")}.pem`);
  writeFileSync(leafPath, leafPem);
  const args = ["verify", "-CAfile", bundle, "-purpose", "sslserver", "-verify_hostname", host, leafPath];
  try {
    return { ok: true, out: execFileSync("openssl", args, { encoding: "utf8", stdio: "pipe" }) };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

/**
 * A CA that carries `constraints` (a Name Constraints extension's bytes) with a key the test holds,
 * as the pod CA's own key cannot be extracted: its bundle file, and PEM leaves it signs for a host.
 */
async function twinCa(name: string, constraints: ArrayBuffer) {
  const newKeys = async () =>
    (await webcrypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
      "verify",
    ])) as webcrypto.CryptoKeyPair;
  const keys = await newKeys();
  const validity = { notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 3600_000) };
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: `CN=${name}`,
    ...validity,
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      new x509.Extension(NAME_CONSTRAINTS_OID, true, constraints),
    ],
  });
  const bundle = join(dir, `${name}.pem`);
  writeFileSync(bundle, cert.toString("pem"));
  const leafKeys = await newKeys();
  const leafFor = async (host: string) =>
    (
      await x509.X509CertificateGenerator.create({
        serialNumber: "02",
        subject: `CN=${host}`,
        issuer: cert.subject,
        ...validity,
        publicKey: leafKeys.publicKey,
        signingKey: keys.privateKey,
        signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
        extensions: [
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: "dns", value: host }]),
        ],
      })
    ).toString("pem");
  return { bundle, leafFor };
}

describe("name constraints", () => {
  it("maps policy hosts to permitted subtrees", () => {
    expect(permittedNames(["API.example.com.", "*.svc.test", "10.0.0.7", "[::1]"])).toEqual([
      { dns: "api.example.com" },
      { dns: ".svc.test" },
      { ip: "10.0.0.7" },
      { ip: "::1" },
    ]);
    expect(() => permittedNames(["*"])).toThrow(/cannot be name-constrained/);
    expect(() => permittedNames(["a*.example.com"])).toThrow(/leading/);
  });

  it("reads subtrees as a verifier does", () => {
    const p = permittedNames(["api.example.com", "*.svc.test", "10.0.0.7"]);
    expect(permits(p, "api.example.com")).toBe(true);
    expect(permits(p, "example.com")).toBe(false);
    expect(permits(p, "evil-api.example.com")).toBe(false);
    expect(permits(p, "a.svc.test")).toBe(true);
    expect(permits(p, "svc.test")).toBe(false);
    expect(permits(p, "10.0.0.7")).toBe(true);
    expect(permits(p, "10.0.0.8")).toBe(false);
  });
});

describe("PodCa", async () => {
  const ca = await PodCa.create({ hosts: ["api.example.com", "*.svc.test", "127.0.0.1"], label: "test" });
  const bundle = join(dir, "bundle.pem");
  await writeTrustBundle(bundle, ca.certPem);

  it("is a short-lived, name-constrained P-256 CA that may sign leaves only", () => {
    const cert = new x509.X509Certificate(ca.certPem);
    expect(cert.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(24 * 3600_000);
    const alg = cert.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
    expect(alg.namedCurve).toBe("P-256");
    const bc = cert.getExtension(x509.BasicConstraintsExtension);
    expect(bc?.ca).toBe(true);
    expect(bc?.pathLength).toBe(0);
    const nc = cert.getExtension(NAME_CONSTRAINTS_OID);
    expect(nc?.critical).toBe(true);
    const text = execFileSync("openssl", ["x509", "-noout", "-text"], {
      input: ca.certPem,
      encoding: "utf8",
    });
    expect(text).toMatch(
      /X509v3 Name Constraints: critical\s+Permitted:\s+DNS:api\.example\.com\s+DNS:\.svc\.test\s+IP:127\.0\.0\.1\/255\.255\.255\.255/,
    );
  });

  it("writes a trust bundle with the pod CA and the system roots", () => {
    const pem = readFileSync(bundle, "utf8");
    expect(pem.startsWith(ca.certPem.trim())).toBe(true);
    expect(pem.match(/BEGIN CERTIFICATE/g)?.length).toBe(rootCertificates.length + 1);
  });

  it("writes the same certificates beside it as a Java truststore (PKCS#12 trusted entries)", () => {
    // openssl reads it as Java would: unencrypted certificate bags, no MAC to check.
    const out = execFileSync(
      "openssl",
      ["pkcs12", "-in", join(dir, JAVA_TRUSTSTORE_FILE), "-nokeys", "-passin", "pass:", "-nomacver"],
      { encoding: "utf8", stdio: "pipe" },
    );
    const pems = out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    expect(pems.length).toBe(rootCertificates.length + 1);
    expect(pems[0]).toBe(ca.certPem.trim());
    // Each entry carries Oracle's trusted-key-usage attribute: what makes it a JVM trust anchor.
    expect(out.match(/2\.16\.840\.1\.113894\.746875\.1\.1/g)?.length).toBe(pems.length);
    expect(out).toMatch(/friendlyName: 000 airlock pod ca test/);
  });

  it("writes the system roots alone when there is no pod CA", async () => {
    const alone = join(dir, "roots-only.pem");
    await writeTrustBundle(alone, undefined);
    const pem = readFileSync(alone, "utf8");
    expect(pem.match(/BEGIN CERTIFICATE/g)?.length).toBe(rootCertificates.length);
    expect(pem).not.toContain(ca.certPem.trim());
  });

  it("mints leaves for policy hosts that the bundle validates (openssl verify)", async () => {
    for (const host of ["api.example.com", "a.svc.test"]) {
      const leaf = await ca.leaf(host);
      const r = opensslVerify(bundle, leaf.certPem, host);
      expect(r.out).toMatch(/OK/);
      expect(r.ok).toBe(true);
    }
  });

  it("caches a leaf per name", async () => {
    const a = await ca.leaf("api.example.com");
    const b = await ca.leaf("API.example.com.");
    expect(b).toBe(a);
  });

  it("refuses to mint for any name outside the policy hosts", async () => {
    for (const host of [
      "example.com",
      "evil.com",
      "x.api.example.com",
      "svc.test",
      "a.b.svc.test",
      "127.0.0.2",
    ]) {
      await expect(ca.leaf(host)).rejects.toBeInstanceOf(NameOutsideConstraintsError);
    }
  });

  it("a leaf outside the constraints, even signed by a CA key, fails verification", async () => {
    // The pod CA's key is not extractable, so sign with a twin CA carrying the same extension bytes.
    const twin = await twinCa("twin", encodeNameConstraints(ca.permitted));
    const mint = twin.leafFor;
    const inside = opensslVerify(twin.bundle, await mint("api.example.com"), "api.example.com");
    expect(inside.ok).toBe(true);
    const outside = opensslVerify(twin.bundle, await mint("evil.com"), "evil.com");
    expect(outside.ok).toBe(false);
    expect(outside.out).toMatch(/permitted subtree violation/);
  });

  it("never signs for a passthrough name: excluded subtrees a verifier applies over a permitted wildcard, and leaf() refuses it", async () => {
    const pinned = await PodCa.create({
      hosts: ["*.svc.test", "api.example.com"],
      excluded: ["pinned.svc.test"],
    });
    expect(pinned.covers("other.svc.test")).toBe(true);
    expect(pinned.covers("pinned.svc.test")).toBe(false);
    await expect(pinned.leaf("other.svc.test")).resolves.toMatchObject({ name: "other.svc.test" });
    await expect(pinned.leaf("PINNED.svc.test.")).rejects.toBeInstanceOf(NameOutsideConstraintsError);
    const text = execFileSync("openssl", ["x509", "-noout", "-text"], {
      input: pinned.certPem,
      encoding: "utf8",
    });
    expect(text).toMatch(
      /Permitted:\s+DNS:\.svc\.test\s+DNS:api\.example\.com\s+Excluded:\s+DNS:pinned\.svc\.test/,
    );
    // Even a key that could sign (a twin CA with the same extension) gets no leaf for it verified.
    const twin = await twinCa("twin-excluded", encodeNameConstraints(pinned.permitted, pinned.excluded));
    expect(opensslVerify(twin.bundle, await twin.leafFor("other.svc.test"), "other.svc.test").ok).toBe(true);
    const refused = opensslVerify(twin.bundle, await twin.leafFor("pinned.svc.test"), "pinned.svc.test");
    expect(refused.ok).toBe(false);
    expect(refused.out).toMatch(/excluded subtree violation/);
  });

  it("serves a real TLS handshake that a client trusting the bundle accepts", async () => {
    const leaf = await ca.leaf("api.example.com");
    const server = createServer({ cert: leaf.chainPem, key: leaf.keyPem, ALPNProtocols: ["http/1.1"] }, (s) =>
      s.end("hi"),
    );
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as { port: number };
    try {
      const sock = connect({
        host: "127.0.0.1",
        port,
        servername: "api.example.com",
        ca: readFileSync(bundle),
      });
      await once(sock, "secureConnect");
      expect(sock.authorized).toBe(true);
      sock.destroy();
    } finally {
      server.close();
    }
  });
});

describe("PodCa expiry (injected clock)", async () => {
  let t = Date.parse("2026-01-01T00:00:00Z");
  const now = () => t;
  const ca = await PodCa.create({
    hosts: ["api.example.com"],
    lifetimeMs: 60 * 60_000,
    leafLifetimeMs: 10 * 60_000,
    now,
  });

  it("serves a cached leaf until its margin, then mints a fresh one and drops the old", async () => {
    const first = await ca.leaf("api.example.com");
    expect(first.notAfter.getTime()).toBe(t + 10 * 60_000);
    expect(await ca.leaf("api.example.com")).toBe(first);
    // The margin is a tenth of the CA lifetime at most the 5 min skew allowance: 5 min here.
    t += 5 * 60_000 - 1;
    expect(await ca.leaf("api.example.com")).toBe(first);
    t += 1;
    const second = await ca.leaf("api.example.com");
    expect(second).not.toBe(first);
    expect(second.certPem).not.toBe(first.certPem);
    expect(second.notAfter.getTime()).toBe(t + 10 * 60_000);
    expect(ca.cachedLeaves).toBe(1);
    t += 6 * 60_000;
    expect(ca.dropExpiredLeaves()).toBe(1);
    expect(ca.cachedLeaves).toBe(0);
  });

  it("never lets a leaf outlive the CA and refuses to serve near the CA's end", async () => {
    t = ca.notAfter.getTime() - 7 * 60_000;
    const late = await ca.leaf("api.example.com");
    expect(late.notAfter.getTime()).toBe(ca.notAfter.getTime());
    t = ca.notAfter.getTime() - 5 * 60_000;
    expect(ca.usable()).toBe(false);
    await expect(ca.leaf("api.example.com")).rejects.toBeInstanceOf(CaExpiredError);
  });

  it("a successor minted ahead is valid from now until its lifetime after taking over", async () => {
    const t0 = t;
    const next = await PodCa.create({
      hosts: ["api.example.com"],
      lifetimeMs: 60_000,
      activeFrom: t0 + 40_000,
      now,
    });
    expect(next.notBefore.getTime()).toBeLessThan(t0);
    expect(next.notAfter.getTime()).toBe(t0 + 100_000);
  });
});
