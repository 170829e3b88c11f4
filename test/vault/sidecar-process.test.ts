// The `airlock sidecar` process with a Vault-credential PostgreSQL connection, against vault-dev,
// the harness PostgreSQL and the shared kube-apiserver: what it holds when it drains (SIGTERM:
// revoked before it exits) and when it crashes (SIGKILL: nothing revokes; Vault drops the role when
// the lease TTL runs out, which is the bound a restart relies on). Vault's answers pass through a
// recording relay, so the test knows every password and token Vault handed out and can check that
// none of them, nor the service-account token, appears in any line the sidecar wrote.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { connect } from "../envtest/connect.ts";
import { freePort, type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { startVault, type VaultServer } from "../harness/vault.ts";
import { AUDIENCE, setUpVault, type VaultFixture, vaultRoles } from "./setup.ts";

const AIRLOCK = new URL("../../bin/airlock.js", import.meta.url).pathname;

let server: PostgresServer;
let vault: VaultServer;
let fx: VaultFixture;
let work: string;
let relay: { url: string; answers(): string; close(): Promise<void> };

/** A TCP relay to Vault that keeps what Vault answered (plain HTTP on loopback). */
async function recordingRelay(port: number): Promise<typeof relay> {
  let seen = "";
  const sockets = new Set<Socket>();
  const s: Server = createServer((client) => {
    const up = tcpConnect(port, "127.0.0.1");
    sockets.add(client).add(up);
    client.pipe(up);
    up.on("data", (c: Buffer) => {
      seen += c.toString("latin1");
      client.write(c);
    });
    const close = () => {
      client.destroy();
      up.destroy();
    };
    client.on("error", close).on("close", close);
    up.on("error", close).on("close", close);
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(s.address() as { port: number }).port}`,
    answers: () => seen,
    async close() {
      for (const x of sockets) x.destroy();
      await new Promise<void>((r) => s.close(() => r()));
    },
  };
}

beforeAll(async () => {
  const k8s = connect();
  [server, vault] = await Promise.all([startPostgres(), startVault()]);
  fx = await setUpVault(vault, server, k8s);
  relay = await recordingRelay(vault.port);
  work = await mkdtemp(join(tmpdir(), "airlock-vault-sidecar-"));
});

afterAll(async () => {
  await relay?.close();
  await vault?.stop();
  await server?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  port: number;
  logs(): string;
  exited: Promise<number | null>;
}

async function startSidecarProcess(name: string, vaultRole: string, dbRole: string): Promise<Running> {
  const port = await freePort();
  const policy: AgentAccessPolicy = {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: `vault-${name}`, namespace: fx.namespace },
    spec: {
      connections: [
        {
          name: "db",
          protocol: "postgres",
          target: { host: "127.0.0.1", port: server.port },
          listen: { port },
          tls: { mode: "disable" },
          database: server.database,
          credentials: {
            vault: {
              address: relay.url,
              auth: { role: vaultRole, audience: AUDIENCE },
              path: `database/creds/${dbRole}`,
            },
          },
        },
      ],
      rules: [{ name: "read", action: "allow" }],
    },
  };
  const file = join(work, `${name}.yaml`);
  await writeFile(file, stringify(policy));
  let out = "";
  const child = spawn(
    process.execPath,
    [
      AIRLOCK,
      "sidecar",
      "--policy",
      file,
      "--secrets",
      join(work, "secrets"),
      "--service-account",
      `${fx.namespace}/agent`,
      "--admin-port",
      "0",
      "--proxy-port",
      "0",
      "--hash-key-file",
      join(work, "hash.key"),
      "--approver-token-file",
      join(work, "approvers"),
      "--service-account-token-dir",
      fx.tokenDir,
      "--log-level",
      "debug",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (out += c.toString()));
  await expect
    .poll(() => out.includes("airlock sidecar started") || child.exitCode !== null, { timeout: 30_000 })
    .toBe(true);
  if (child.exitCode !== null) throw new Error(`the sidecar exited ${child.exitCode}:\n${out}`);
  return { child, port, logs: () => out, exited };
}

async function agentSession(port: number): Promise<pg.Client> {
  const c = new pg.Client({ host: "127.0.0.1", port, user: "agent", database: server.database });
  c.on("error", () => {}); // the sidecar going away ends the session
  await c.connect();
  return c;
}

/** Every password and Vault token Vault answered through the relay. */
function vaultSecrets(): string[] {
  const text = relay.answers();
  return [...text.matchAll(/"(?:client_token|password)":"([^"]+)"/g)].map((m) => m[1] as string);
}

describe("the sidecar process and the leases it holds", () => {
  it("drain (SIGTERM) revokes the open session's lease before the process exits; no secret is logged", async () => {
    const sc = await startSidecarProcess("drain", "airlock", "ro");
    const c = await agentSession(sc.port);
    const user = (await c.query("SELECT current_user AS u")).rows[0].u as string;
    expect(user).toMatch(/^v-/);
    expect(await vaultRoles(server)).toContain(user);

    sc.child.kill("SIGTERM");
    // The lease TTL is 1 h: the role going now is the sidecar's revocation.
    await expect.poll(() => vaultRoles(server), { timeout: 10_000 }).not.toContain(user);
    await c.end().catch(() => {});
    expect(await sc.exited).toBe(0);

    const logs = sc.logs();
    const audit = logs
      .split("\n")
      .find((l) => l.includes('"audit":true') && l.includes('"protocol":"postgres"'));
    expect(audit).toMatch(/"credential":\{"source":"vault","lease":"database\/creds\/ro\/[A-Za-z0-9.]+"\}/);
    expect(logs).toContain("vault: lease revoked");
    const secrets = vaultSecrets();
    expect(secrets.length).toBeGreaterThanOrEqual(2); // a Vault token and the database password
    for (const s of [...secrets, fx.agentJwt]) expect(logs).not.toContain(s);
  }, 60_000);

  it("a crash (SIGKILL) revokes nothing: Vault drops the role when the 4 s lease runs out", async () => {
    const sc = await startSidecarProcess("crash", "airlock-short", "short");
    const c = await agentSession(sc.port);
    const user = (await c.query("SELECT current_user AS u")).rows[0].u as string;
    // Renewed past its TTL while the sidecar lives.
    await new Promise((r) => setTimeout(r, 6_000));
    expect(await vaultRoles(server)).toContain(user);
    sc.child.kill("SIGKILL");
    await sc.exited;
    await c.end().catch(() => {});
    const killed = Date.now();
    expect(await vaultRoles(server)).toContain(user);
    await expect.poll(() => vaultRoles(server), { timeout: 20_000, interval: 250 }).not.toContain(user);
    // Gone within the TTL (4 s) plus Vault's expiry tick, not at once.
    expect(Date.now() - killed).toBeLessThan(15_000);
    for (const s of [...vaultSecrets(), fx.agentJwt]) expect(sc.logs()).not.toContain(s);
  }, 60_000);
});
