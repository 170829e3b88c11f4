// Keys and certificates against OpenSSH's own ssh-keygen (installed with openssh-client): keys it
// generates parse to the same public keys, keys we write it reads back, and certificates we sign
// with each CA key type are ones it accepts (`ssh-keygen -L` verifies the CA signature).
import { execFileSync } from "node:child_process";
import { verify } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { extensionNames, parseCertificate, signUserCertificate } from "./certificate.ts";
import {
  fingerprint,
  generateEd25519,
  parsePrivateKey,
  publicKeyLine,
  SshKeyError,
  toOpenSshPrivateKey,
} from "./keys.ts";
import { SshReader } from "./wire.ts";

const dir = mkdtempSync(join(tmpdir(), "airlock-keys-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keygen(name: string, args: string[]): { key: string; pub: string } {
  const path = join(dir, name);
  execFileSync("ssh-keygen", ["-q", "-N", "", "-C", name, "-f", path, ...args]);
  return { key: readFileSync(path, "utf8"), pub: readFileSync(`${path}.pub`, "utf8").trim() };
}

const KINDS: [string, string[]][] = [
  ["ed25519", ["-t", "ed25519"]],
  ["rsa", ["-t", "rsa", "-b", "2048"]],
  ["rsa-pem", ["-t", "rsa", "-b", "2048", "-m", "PEM"]],
  ["ecdsa256", ["-t", "ecdsa", "-b", "256"]],
  ["ecdsa384", ["-t", "ecdsa", "-b", "384"]],
  ["ecdsa521", ["-t", "ecdsa", "-b", "521"]],
];

describe("parsePrivateKey", () => {
  it.each(KINDS)("reads an ssh-keygen %s key to the same public key", (name, args) => {
    const { key, pub } = keygen(name, args);
    const parsed = parsePrivateKey(key);
    expect(publicKeyLine(parsed.publicBlob)).toBe(pub.split(" ").slice(0, 2).join(" "));
    const sfp = execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", join(dir, `${name}.pub`)], {
      encoding: "utf8",
    });
    expect(sfp).toContain(fingerprint(parsed.publicBlob));
  });

  it("signs SSH signatures that verify", () => {
    const k = generateEd25519();
    const data = Buffer.from("hello");
    const sig = new SshReader(k.sign(data));
    expect(sig.text()).toBe("ssh-ed25519");
    expect(verify(null, data, k.privateKey, sig.string())).toBe(true);
  });

  it("refuses encrypted keys and garbage with a clear message", () => {
    const path = join(dir, "enc");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "secret", "-f", path]);
    expect(() => parsePrivateKey(readFileSync(path, "utf8"))).toThrow(/passphrase-protected/);
    expect(() => parsePrivateKey("not a key")).toThrow(SshKeyError);
    expect(() =>
      parsePrivateKey("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----"),
    ).toThrow(SshKeyError);
  });

  it("writes ed25519 keys ssh-keygen reads back", () => {
    const k = generateEd25519();
    const path = join(dir, "ours");
    writeFileSync(path, toOpenSshPrivateKey(k, "ours"), { mode: 0o600 });
    const pub = execFileSync("ssh-keygen", ["-y", "-f", path], { encoding: "utf8" }).trim();
    expect(pub.split(" ").slice(0, 2).join(" ")).toBe(publicKeyLine(k.publicBlob));
    expect(parsePrivateKey(readFileSync(path, "utf8")).publicBlob.equals(k.publicBlob)).toBe(true);
  });
});

describe("signUserCertificate", () => {
  it.each(KINDS)("with a %s CA: ssh-keygen -L accepts the signature and reads every field", (name, args) => {
    const ca = parsePrivateKey(keygen(`ca-${name}`, args).key);
    const cert = signUserCertificate({
      ca,
      principals: ["deploy", "airlock-agents"],
      validitySeconds: 300,
      keyId: "airlock:pod=agents/agent-0,user=alice,session=s1",
      permissions: { pty: true, portForwarding: true },
      serial: 1234n,
      now: new Date("2030-01-01T00:00:00Z"),
    });
    const path = join(dir, `cert-${name}-cert.pub`);
    writeFileSync(path, `${cert.line}\n`);
    const out = execFileSync("ssh-keygen", ["-L", "-f", path], { encoding: "utf8" });
    expect(out).toContain("Type: ssh-ed25519-cert-v01@openssh.com user certificate");
    expect(out).toContain("Serial: 1234");
    expect(out).toContain('Key ID: "airlock:pod=agents/agent-0,user=alice,session=s1"');
    expect(out).toMatch(/Principals: \n\s+deploy\n\s+airlock-agents\n/);
    expect(out).toMatch(/Extensions: \n\s+permit-port-forwarding\n\s+permit-pty\n/);
    expect(out).toContain("Critical Options: (none)");
    expect(out).toContain(
      `Signing CA: ${name.startsWith("rsa") ? "RSA" : name.startsWith("ecdsa") ? "ECDSA" : "ED25519"}`,
    );
    const parsed = parseCertificate(cert.blob);
    expect(parsed.validBefore.getTime() - parsed.validAfter.getTime()).toBe(330_000);
    expect(parsed.signatureAlgorithm).toBe(ca.signatureAlgorithm);
  });

  it("a tampered certificate is refused by ssh-keygen", () => {
    const ca = generateEd25519();
    const cert = signUserCertificate({ ca, principals: ["p"], validitySeconds: 60, keyId: "x" });
    const bad = Buffer.from(cert.blob);
    const at = bad.indexOf(Buffer.from("x"), 100); // inside the key id
    bad[at] = "y".charCodeAt(0);
    const path = join(dir, "bad-cert.pub");
    writeFileSync(path, `${cert.certType} ${bad.toString("base64")}\n`);
    expect(() => execFileSync("ssh-keygen", ["-L", "-f", path], { stdio: "pipe" })).toThrow();
  });

  it("permits only what is asked, in OpenSSH's order", () => {
    expect(extensionNames()).toEqual([]);
    expect(extensionNames({ pty: true })).toEqual(["permit-pty"]);
    expect(
      extensionNames({
        pty: true,
        portForwarding: true,
        agentForwarding: true,
        x11Forwarding: true,
        userRc: true,
      }),
    ).toEqual([
      "permit-X11-forwarding",
      "permit-agent-forwarding",
      "permit-port-forwarding",
      "permit-pty",
      "permit-user-rc",
    ]);
  });

  it("refuses certificates without principals or validity", () => {
    const ca = generateEd25519();
    expect(() => signUserCertificate({ ca, principals: [], validitySeconds: 60, keyId: "x" })).toThrow();
    expect(() => signUserCertificate({ ca, principals: ["p"], validitySeconds: 0, keyId: "x" })).toThrow();
  });
});
