// Short-lived certificates against a real sshd that trusts only the test user CA
// (TrustedUserCAKeys + AuthorizedPrincipalsFile): what the sidecar signs is accepted by OpenSSH's
// own client and server, expires when it says, and every guarded session gets a fresh one. Also:
// an end-user OIDC token as the SSH password.
import { execFile } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  parseCertificate,
  parsePrivateKey,
  signUserCertificate,
  toOpenSshPrivateKey,
} from "../../sidecar/src/protocols/ssh/index.ts";
import { makeKey, signToken, type TestIdp, TestIdp as TestIdpClass } from "../fixtures/oidc-provider.ts";
import { type SshdServer, startSshd } from "../harness/sshd.ts";
import {
  agentClient,
  exec,
  execOnce,
  type SshSidecar,
  sleep,
  sshPolicy,
  startSshSidecar,
  waitFor,
} from "./support.ts";

let sshd: SshdServer;
let work: string;
const sidecars: SshSidecar[] = [];

beforeAll(async () => {
  sshd = await startSshd();
  work = await mkdtemp(join(tmpdir(), "airlock-certs-"));
});

afterAll(async () => {
  for (const s of sidecars) await s.close();
  await sshd?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Writes key + certificate files the way `ssh-keygen -s` would, for OpenSSH's own client. */
async function writeIdentity(name: string, cert: ReturnType<typeof signUserCertificate>): Promise<string> {
  const key = join(work, name);
  await writeFile(key, toOpenSshPrivateKey(cert.key, name));
  await chmod(key, 0o600);
  await writeFile(`${key}-cert.pub`, `${cert.line}\n`);
  return key;
}

function keygenList(path: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile("ssh-keygen", ["-L", "-f", path], (err, stdout, stderr) =>
      err ? reject(new Error(stderr)) : resolve(stdout),
    ),
  );
}

describe("per-session certificates", () => {
  it("are what OpenSSH expects: ssh-keygen reads them back, sshd accepts them via the real ssh client", async () => {
    const cert = signUserCertificate({
      ca: parsePrivateKey(sshd.caPrivateKey),
      principals: [sshd.user],
      validitySeconds: 60,
      keyId: "airlock:test",
      permissions: { pty: true },
    });
    const key = await writeIdentity("fresh", cert);
    const listed = await keygenList(`${key}-cert.pub`);
    expect(listed).toContain("Type: ssh-ed25519-cert-v01@openssh.com user certificate");
    expect(listed).toContain('Key ID: "airlock:test"');
    expect(listed).toMatch(/Principals:\s+\n\s+airlock-ssh-test|Principals: \n\s+\S+/);
    expect(listed).toMatch(/Extensions: \n\s+permit-pty\n/);
    expect(listed).toMatch(/Critical Options: \(none\)/);
    const r = await sshd.ssh(["-i", key, "127.0.0.1", "echo cert-ok"]);
    expect(r).toMatchObject({ code: 0, stdout: "cert-ok\n" });
  });

  it("expire: a certificate valid for 2 s works at once and is refused by sshd once stale", async () => {
    const cert = signUserCertificate({
      ca: parsePrivateKey(sshd.caPrivateKey),
      principals: [sshd.user],
      validitySeconds: 2,
      keyId: "airlock:short-lived",
    });
    const key = await writeIdentity("short", cert);
    expect((await sshd.ssh(["-i", key, "127.0.0.1", "true"])).code).toBe(0);
    await sleep(Math.max(0, cert.validBefore.getTime() - Date.now()) + 1_200);
    const stale = await sshd.ssh(["-i", key, "127.0.0.1", "true"]);
    expect(stale.code).toBe(255);
    expect(stale.stderr).toMatch(/Permission denied/);
    await waitFor(() => /expired|Certificate invalid/i.test(sshd.logs()), 5_000, "sshd's refusal in its log");
  });

  it("refuse a principal sshd does not accept, and a certificate from another CA", async () => {
    const wrongPrincipal = signUserCertificate({
      ca: parsePrivateKey(sshd.caPrivateKey),
      principals: ["root"],
      validitySeconds: 60,
      keyId: "airlock:wrong-principal",
    });
    expect(
      (await sshd.ssh(["-i", await writeIdentity("wp", wrongPrincipal), "127.0.0.1", "true"])).code,
    ).toBe(255);
    const otherCa = signUserCertificate({
      ca: parsePrivateKey(sshd.userPrivateKey), // a key sshd does not trust as a CA
      principals: [sshd.user],
      validitySeconds: 60,
      keyId: "airlock:other-ca",
    });
    expect((await sshd.ssh(["-i", await writeIdentity("oc", otherCa), "127.0.0.1", "true"])).code).toBe(255);
  });

  it("every guarded session signs a fresh one: validity honoured across sessions", async () => {
    const s = await startSshSidecar({
      sshd,
      policies: [
        sshPolicy(sshd, {
          validity: "2s",
          rules: [{ name: "r", action: "allow", match: { ssh: { commands: ["id"] } } }],
        }),
      ],
    });
    sidecars.push(s);
    const first = await execOnce(s.port, "id");
    expect(first.code).toBe(0);
    await sleep(3_000); // the first session's certificate is stale now
    const second = await execOnce(s.port, "id");
    expect(second.code).toBe(0);

    const sessions = [...new Set(s.audit.map((e) => e.session))];
    expect(sessions).toHaveLength(2);
    const certs = s
      .logs()
      .split("\n")
      .filter((l) => l.includes("ssh upstream connected"))
      .map(
        (l) =>
          JSON.parse(l).certificate as {
            serial: string;
            keyId: string;
            validBefore: string;
            extensions: string[];
          },
      );
    expect(certs).toHaveLength(2);
    expect(certs[0]?.serial).not.toBe(certs[1]?.serial);
    for (const [i, c] of certs.entries()) {
      expect(c.keyId).toBe(
        `airlock:pod=agents/agent-0,user=system:serviceaccount:agents:agent,session=${sessions[i]}`,
      );
      // Shells and forwarding are not allowed by this policy: the certificate permits neither.
      expect(c.extensions).toEqual([]);
    }
    // sshd saw both, by serial, each under its own key id.
    for (const c of certs) expect(sshd.logs()).toContain(`serial ${c.serial}`);
    const lifetime = Date.parse(certs[1]?.validBefore ?? "") - Date.now();
    expect(lifetime).toBeLessThanOrEqual(2_000);
  });

  it("the signed blob parses back with the fields sshd logs", () => {
    const cert = signUserCertificate({
      ca: parsePrivateKey(sshd.caPrivateKey),
      principals: ["a", "b"],
      validitySeconds: 300,
      keyId: "k",
      permissions: { portForwarding: true, pty: true },
      serial: 42n,
    });
    expect(parseCertificate(cert.blob)).toMatchObject({
      type: "user",
      serial: 42n,
      keyId: "k",
      principals: ["a", "b"],
      extensions: ["permit-port-forwarding", "permit-pty"],
      criticalOptions: [],
      signatureAlgorithm: "ssh-ed25519",
    });
  });
});

describe("end-user identity as the SSH password", () => {
  let idp: TestIdp;
  let s: SshSidecar;
  let key: Awaited<ReturnType<typeof makeKey>>;
  beforeAll(async () => {
    key = await makeKey("ES256", "k1");
    idp = await TestIdpClass.start([key]);
    s = await startSshSidecar({
      sshd,
      policies: [
        sshPolicy(sshd, {
          identity: {
            requireUserToken: true,
            oidc: { issuer: idp.url, audiences: ["airlock"], jwksUri: idp.jwksUri, algorithms: ["ES256"] },
          },
          rules: [
            {
              name: "alice-only",
              action: "allow",
              subjects: { users: ["alice"] },
              match: { ssh: { commands: ["id"] } },
            },
          ],
        }),
      ],
    });
    sidecars.push(s);
  });
  afterAll(async () => {
    await idp?.stop();
  });

  const token = (claims: Record<string, unknown>) =>
    signToken(key, {
      iss: idp.url,
      aud: "airlock",
      sub: "alice",
      exp: Math.floor(Date.now() / 1000) + 300,
      ...claims,
    });

  it("refuses an agent without a token, or with a bad one", async () => {
    await expect(agentClient(s.port)).rejects.toThrow(/authentication/i);
    await expect(agentClient(s.port, { password: "not-a-token" })).rejects.toThrow(/authentication/i);
    await expect(
      agentClient(s.port, { password: await token({ exp: Math.floor(Date.now() / 1000) - 600 }) }),
    ).rejects.toThrow(/authentication/i);
    await waitFor(
      () => s.audit.some((e) => e.upstream?.error === "identity_required"),
      5_000,
      "the audit of the tokenless agent",
    );
    const refusals = s.audit.filter(
      (e) => e.upstream?.error === "invalid_identity" || e.upstream?.error === "identity_required",
    );
    expect(refusals.length).toBeGreaterThanOrEqual(3);
    expect(s.audit.some((e) => e.decision.reason.includes("expired"))).toBe(true);
    // The token is never logged.
    expect(s.logs()).not.toContain("eyJ");
  });

  it("runs as the verified user, who the rules and the certificate name", async () => {
    const client = await agentClient(s.port, { password: await token({ sub: "alice" }) });
    try {
      expect((await exec(client, "id")).code).toBe(0);
    } finally {
      client.end();
    }
    const event = s.audit.findLast((e) => e.operation.kind === "ssh-exec");
    expect(event).toMatchObject({
      identity: { user: "alice" },
      decision: { action: "allow", rule: "alice-only" },
    });
    expect(sshd.logs()).toContain(`user=alice,session=${event?.session}`);

    const bob = await agentClient(s.port, { password: await token({ sub: "bob" }) });
    try {
      expect((await exec(bob, "id")).code).toBe(126);
    } finally {
      bob.end();
    }
  });
});
