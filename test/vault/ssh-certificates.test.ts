// SSH session certificates signed by Vault's SSH secrets engine (credentials.vault on an ssh
// connection), against real parts: vault-dev with the SSH engine plugin, Kubernetes auth through
// the shared kube-apiserver, and OpenSSH's sshd trusting only Vault's CA. The sidecar holds no CA
// key: each session's fresh ed25519 key is signed by Vault, and what Vault signs is held to what
// the policy asked for.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { connect } from "../envtest/connect.ts";
import { type SshdServer, startSshd } from "../harness/sshd.ts";
import { startVault, type VaultServer } from "../harness/vault.ts";
import { execOnce, type SshSidecar, sshPolicy, startSshSidecar } from "../ssh/support.ts";
import { AUDIENCE, setUpKubernetesAuth, type VaultFixture } from "./setup.ts";

let vault: VaultServer;
let sshd: SshdServer;
let fx: VaultFixture;
let vaultCa: string;
const sidecars: SshSidecar[] = [];

beforeAll(async () => {
  const k8s = connect();
  vault = await startVault();
  await vault.enableSsh("ssh");
  const ca = await vault.api("POST", "ssh/config/ca", { generate_signing_key: true });
  vaultCa = String((ca?.data as { public_key?: string } | undefined)?.public_key ?? "");
  // sshd trusts Vault's CA only: the harness's own CA (still in the sidecar's Secret) is not.
  sshd = await startSshd({ trustedUserCaKeys: vaultCa });
  const role = (extra: Record<string, unknown> = {}) => ({
    key_type: "ca",
    allow_user_certificates: true,
    allowed_users: sshd.user,
    allowed_extensions: "permit-pty,permit-port-forwarding",
    default_extensions: {},
    allow_user_key_ids: true,
    ttl: "5m",
    max_ttl: "10m",
    ...extra,
  });
  await vault.api("POST", "ssh/roles/agents", role());
  // A role whose defaults grant a pty to every certificate that asks for no extension.
  await vault.api("POST", "ssh/roles/pty-default", role({ default_extensions: { "permit-pty": "" } }));
  // A role that signs for another user only.
  await vault.api("POST", "ssh/roles/others", role({ allowed_users: "someone-else" }));
  await vault.api("PUT", "sys/policies/acl/airlock-ssh", {
    policy: [
      'path "ssh/sign/agents" { capabilities = ["update"] }',
      'path "ssh/sign/pty-default" { capabilities = ["update"] }',
      'path "ssh/sign/others" { capabilities = ["update"] }',
    ].join("\n"),
  });
  fx = await setUpKubernetesAuth(vault, k8s, "airlock-ssh");
}, 120_000);

afterAll(async () => {
  for (const s of sidecars) await s.close();
  await sshd?.stop();
  await vault?.stop();
});

function policy(path = "ssh/sign/agents", address = vault.address): AgentAccessPolicy {
  const p = sshPolicy(sshd);
  const conn = p.spec.connections[0];
  if (!conn) throw new Error("no connection");
  conn.credentials = {
    vault: { address, path, auth: { role: "airlock", audience: AUDIENCE } },
    ssh: { username: sshd.user, certificate: { principals: [sshd.user], validity: "2m" } },
  };
  return p;
}

async function sidecar(p: AgentAccessPolicy): Promise<SshSidecar> {
  const s = await startSshSidecar({
    sshd,
    policies: [p],
    credentials: { tokenDir: fx.tokenDir, vaultTimeoutMs: 2_000 },
  });
  sidecars.push(s);
  return s;
}

describe("Vault signs each session's certificate", () => {
  it("a command runs through a certificate Vault signed for the session's fresh key", async () => {
    const s = await sidecar(policy());
    const r = await execOnce(s.port, "id");
    expect(r.code, JSON.stringify(r)).toBe(0);
    expect(r.stdout).toContain(`(${sshd.user})`);
    // sshd names our key ID (pod, user, session) and Vault's CA, by its fingerprint, on login.
    const blob = Buffer.from(vaultCa.split(/\s+/)[1] ?? "", "base64");
    const fp = `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
    expect(blob.length).toBeGreaterThan(0);
    const accepted = sshd
      .logs()
      .match(/Accepted certificate ID "(airlock:[^"]+)" \(serial \d+\) signed by \w+ CA (\S+) via/);
    expect(accepted?.[1], sshd.logs()).toMatch(
      /^airlock:pod=agents\/agent-0,user=[^,]+,session=[0-9a-f-]{36}$/,
    );
    expect(accepted?.[2]).toBe(fp);
    expect(s.logs()).toMatch(/"auth":"certificate"/);
    // No secret in the sidecar's log: not the Vault token, not the service-account token.
    expect(s.logs()).not.toContain(fx.agentJwt);
  });

  it("the harness's own CA key is not trusted here: the Vault-signed path is what let the session in", async () => {
    const p = sshPolicy(sshd); // certificate signed with the CA key in the Secret
    const s = await sidecar(p);
    const r = await execOnce(s.port, "id");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/upstream unavailable \(auth_failed\)/);
  });

  it("a role whose defaults grant more than the policy allows: the certificate is not used", async () => {
    const s = await sidecar(policy("ssh/sign/pty-default"));
    const r = await execOnce(s.port, "id");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/upstream unavailable \(vault_refused\)/);
    expect(s.logs()).toMatch(/extensions the policy does not allow \(permit-pty/);
  });

  it("a role that will not sign for the user: refused, with Vault's reason in the sidecar's log", async () => {
    const s = await sidecar(policy("ssh/sign/others"));
    const r = await execOnce(s.port, "id");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/upstream unavailable \(vault_refused\)/);
    expect(s.logs()).toMatch(/Vault did not sign the session certificate/);
  });

  it("Vault unreachable: refused as unavailable; nothing falls back to a key", async () => {
    const s = await sidecar(policy("ssh/sign/agents", "http://127.0.0.1:1"));
    const r = await execOnce(s.port, "id");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/upstream unavailable \(vault_unavailable\)/);
  });
});
