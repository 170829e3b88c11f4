import { createHmac, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { generateEd25519 } from "./keys.ts";
import { knownHostsName, parseKnownHosts } from "./known-hosts.ts";

const a = generateEd25519().publicBlob;
const b = generateEd25519().publicBlob;
const line = (hosts: string, blob: Buffer) => `${hosts} ssh-ed25519 ${blob.toString("base64")}`;

function hashed(name: string): string {
  const salt = randomBytes(20);
  const hash = createHmac("sha1", salt).update(name).digest();
  return `|1|${salt.toString("base64")}|${hash.toString("base64")}`;
}

describe("known_hosts", () => {
  it("names hosts as OpenSSH does", () => {
    expect(knownHostsName("Db.Example.com", 22)).toBe("db.example.com");
    expect(knownHostsName("10.0.0.1", 2222)).toBe("[10.0.0.1]:2222");
  });

  it("matches plain, port-qualified, wildcard and hashed entries", () => {
    expect(parseKnownHosts(line("db.example.com,10.0.0.1", a), "db.example.com", 22).check(a)).toBe("ok");
    expect(parseKnownHosts(line("[db]:2222", a), "db", 2222).check(a)).toBe("ok");
    expect(parseKnownHosts(line("db", a), "db", 2222).keys).toHaveLength(0);
    expect(parseKnownHosts(line("*.example.com", a), "db.example.com", 22).check(a)).toBe("ok");
    expect(parseKnownHosts(line("db?.example.com", a), "db1.example.com", 22).check(a)).toBe("ok");
    expect(parseKnownHosts(line(hashed("[db]:2222"), a), "db", 2222).check(a)).toBe("ok");
    expect(parseKnownHosts(line(hashed("db"), a), "other", 22).keys).toHaveLength(0);
  });

  it("a negated pattern excludes the host", () => {
    expect(
      parseKnownHosts(line("*.example.com,!evil.example.com", a), "evil.example.com", 22).keys,
    ).toHaveLength(0);
  });

  it("a different key is a mismatch; a revoked key is refused even if listed", () => {
    const text = [
      "# comment",
      "",
      line("db", a),
      `@revoked db ssh-ed25519 ${b.toString("base64")}`,
      `@revoked * ssh-ed25519 ${b.toString("base64")}`,
      line("db", b),
      `@cert-authority *.example.com ssh-ed25519 ${a.toString("base64")}`,
    ].join("\n");
    const p = parseKnownHosts(text, "db", 22);
    expect(p.check(a)).toBe("ok");
    expect(p.check(b)).toBe("revoked");
    expect(p.check(generateEd25519().publicBlob)).toBe("mismatch");
    expect(p.algorithms).toEqual(["ssh-ed25519"]);
  });

  it("offers the host-key algorithms of the listed keys", () => {
    const rsa = `db ssh-rsa ${Buffer.from("x").toString("base64")}`;
    expect(parseKnownHosts(`${rsa}\n${line("db", a)}`, "db", 22).algorithms).toEqual([
      "rsa-sha2-512",
      "rsa-sha2-256",
      "ssh-rsa",
      "ssh-ed25519",
    ]);
  });
});
