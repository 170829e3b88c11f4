// paramiko (Python) as the agent, from the venv .ci/run installs (~/.cache/airlock/paramiko-venv,
// override with AIRLOCK_PARAMIKO_PYTHON). In-pod trust: a dummy password and the bare `none`
// method both get in, and an optional OIDC issuer does not change that for a password that cannot
// be a token; where the policy requires a user token, neither does. Masking on: output masked,
// exit statuses relayed.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeKey, type TestIdp, TestIdp as TestIdpClass } from "../fixtures/oidc-provider.ts";
import { type SshdServer, startSshd } from "../harness/sshd.ts";
import { type SshPolicyOptions, type SshSidecar, sshPolicy, startSshSidecar } from "./support.ts";

const PYTHON =
  process.env.AIRLOCK_PARAMIKO_PYTHON ??
  join(homedir(), ".cache", "airlock", "paramiko-venv", "bin", "python");
const SCRIPT = join(import.meta.dirname, "fixtures", "paramiko_client.py");
const available = existsSync(PYTHON);
if (!available) console.warn(`paramiko tests skipped: no ${PYTHON} (.ci/run creates it)`);

const KEY = "AKIAIOSFODNN7EXAMPLE";
const RULES: SshPolicyOptions["rules"] = [
  { name: "cmds", action: "allow", match: { ssh: { commands: ["echo *", "false"] } } },
];
const MASKING: SshPolicyOptions["masking"] = [
  { name: "keys", detectors: ["awsAccessKey"], strategy: "redact" },
];

interface Result {
  code?: number;
  stdout?: string;
  stderr?: string;
  error?: string;
}
const paramiko = (port: number, mode: "none" | "password" | "transport-none", command: string) =>
  new Promise<Result>((resolve, reject) => {
    execFile(PYTHON, [SCRIPT, String(port), mode, command], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`paramiko client failed: ${stderr || err.message}`));
      resolve(JSON.parse(stdout) as Result);
    });
  });

let sshd: SshdServer;
let idp: TestIdp;
const sidecars: SshSidecar[] = [];
beforeAll(async () => {
  sshd = await startSshd();
  idp = await TestIdpClass.start([await makeKey("ES256", "k1")]);
});
afterAll(async () => {
  for (const s of sidecars) await s.close();
  await idp?.stop();
  await sshd?.stop();
});
const sidecar = async (identity?: SshPolicyOptions["identity"]) => {
  const s = await startSshSidecar({
    sshd,
    policies: [sshPolicy(sshd, { rules: RULES, masking: MASKING, ...(identity ? { identity } : {}) })],
  });
  sidecars.push(s);
  return s;
};
const oidc = () => ({
  issuer: idp.url,
  audiences: ["airlock"],
  jwksUri: idp.jwksUri,
  algorithms: ["ES256" as const],
});

describe.skipIf(!available)("paramiko", () => {
  it("in-pod trust: a dummy password or `none` authenticates; output masked; exit statuses", async () => {
    const s = await sidecar();
    expect(await paramiko(s.port, "password", `echo key=${KEY}`)).toMatchObject({ code: 0 });
    const masked = await paramiko(s.port, "password", `echo key=${KEY}`);
    expect(masked.stdout).not.toContain(KEY);
    expect(masked.stdout).toMatch(/^key=.+\n$/);
    expect(await paramiko(s.port, "transport-none", "echo via none")).toMatchObject({
      code: 0,
      stdout: "via none\n",
    });
    expect(await paramiko(s.port, "password", "false")).toMatchObject({ code: 1 });
    const denied = await paramiko(s.port, "password", "id");
    expect(denied.code).toBe(126);
    expect(denied.stderr).toMatch(/^airlock: denied/);
    // SSHClient without key or password never sends a request (paramiko refuses on its own side):
    // give it a dummy password, or use Transport.auth_none.
    expect((await paramiko(s.port, "none", "echo x")).error).toMatch(/No authentication methods available/);
  });

  it("an optional OIDC issuer: a dummy password is in-pod trust, not a token", async () => {
    const s = await sidecar({ oidc: oidc() });
    expect(await paramiko(s.port, "password", "echo ok")).toMatchObject({ code: 0, stdout: "ok\n" });
  });

  it("a required user token: neither a dummy password nor `none` gets in", async () => {
    const s = await sidecar({ requireUserToken: true, oidc: oidc() });
    expect((await paramiko(s.port, "password", "echo x")).error).toMatch(/Authentication failed/i);
    expect((await paramiko(s.port, "transport-none", "echo x")).error).toMatch(
      /Authentication|BadAuthenticationType/i,
    );
  });
});
