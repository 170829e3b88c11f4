// PostgreSQL sessions under credentials.vault, against real parts: vault-dev (database engine →
// the harness PostgreSQL; Kubernetes auth → the shared kube-apiserver's TokenReview) and the guard
// in process. Each session logs in with the agent's projected token, runs as a role Vault minted
// for it, and that role is dropped when the session ends.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentAccessPolicy, vaultTokenFile } from "../../api/src/index.ts";
import { connect } from "../envtest/connect.ts";
import { freePort, type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { relay } from "../harness/relay.ts";
import { startVault, type VaultServer } from "../harness/vault.ts";
import { type GuardedPostgres, startGuard } from "../postgres/support.ts";
import {
  setUpVault,
  type VaultFixture,
  type VaultSpec,
  vaultPgPolicy,
  vaultRoles,
  vaultSources,
} from "./setup.ts";

let server: PostgresServer;
let vault: VaultServer;
let fx: VaultFixture;
const guards: GuardedPostgres[] = [];

beforeAll(async () => {
  const k8s = connect();
  [server, vault] = await Promise.all([startPostgres(), startVault()]);
  fx = await setUpVault(vault, server, k8s);
});

afterAll(async () => {
  for (const g of guards) await g.close();
  await vault?.stop();
  await server?.stop();
});

const vaultPolicy = (vaultSpec: VaultSpec, secretRef = false) =>
  vaultPgPolicy(server, vault, [{ name: "read", action: "allow" }], vaultSpec, secretRef);

async function guard(policy: AgentAccessPolicy): Promise<GuardedPostgres> {
  const g = await startGuard(policy, {
    credential: server.users.scram,
    credentials: vaultSources(fx),
  });
  guards.push(g);
  return g;
}

async function session(g: GuardedPostgres): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: g.url() });
  await c.connect();
  return c;
}

async function connectError(g: GuardedPostgres): Promise<{ code?: string; message: string }> {
  const c = new pg.Client({ connectionString: g.url() });
  const err = await c.connect().then(
    () => undefined,
    (e: Error & { code?: string }) => e,
  );
  await c.end().catch(() => {});
  if (!err) throw new Error("the session was admitted");
  return { message: err.message, ...(err.code ? { code: err.code } : {}) };
}

const leaseLookup = (lease: string) => vault.raw("PUT", "sys/leases/lookup", { lease_id: lease });

async function metric(g: GuardedPostgres, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await g.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  return m
    .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
    .reduce((n, v) => n + v.value, 0);
}

describe("a session gets its own Vault-minted role, dropped when the session ends", () => {
  let g: GuardedPostgres;
  beforeAll(async () => {
    g = await guard(vaultPolicy({}));
  });

  it("runs statements as the minted role; audit events carry the lease ID; the role is gone after", async () => {
    const before = await vaultRoles(server);
    const c = await session(g);
    const { rows } = await c.query(
      "SELECT current_user AS u, session_user AS s, count(*)::int AS n FROM accounts",
    );
    const user = rows[0].u as string;
    expect(user).toMatch(/^v-/);
    expect(rows[0].s).toBe(user);
    expect(rows[0].n).toBe(2);
    expect(before).not.toContain(user);
    // The upstream session as PostgreSQL sees it.
    const activity = await server.sql(`SELECT count(*) FROM pg_stat_activity WHERE usename = '${user}'`);
    expect(Number(activity)).toBeGreaterThanOrEqual(1);
    expect(await vaultRoles(server)).toContain(user);

    const event = g.audit.find((e) => e.operation.kind === "sql");
    const lease = event?.credential?.lease ?? "";
    expect(event?.credential).toEqual({
      source: "vault",
      lease: expect.stringMatching(/^database\/creds\/ro\//),
    });
    expect((await leaseLookup(lease)).status).toBe(200);
    expect(await metric(g, "airlock_credential_leases", { connection: "db" })).toBe(1);

    await c.end();
    // Lease TTL is 1 h: a role gone within seconds was revoked by the sidecar.
    await expect.poll(() => vaultRoles(server), { timeout: 10_000 }).not.toContain(user);
    expect((await leaseLookup(lease)).status).toBe(400);
    expect(
      await metric(g, "airlock_credential_revocations_total", { result: "revoked" }),
    ).toBeGreaterThanOrEqual(1);
    expect(await metric(g, "airlock_credential_leases", { connection: "db" })).toBe(0);

    const second = await session(g);
    const again = (await second.query("SELECT current_user AS u")).rows[0].u as string;
    expect(again).toMatch(/^v-/);
    expect(again).not.toBe(user);
    await second.end();
    await expect.poll(() => vaultRoles(server), { timeout: 10_000 }).not.toContain(again);
  });

  it("no Secret is read: a Vault connection works with no pg-cred mounted", async () => {
    const p = vaultPolicy({});
    const g2 = await startGuard(p, { credentials: { tokenDir: fx.tokenDir } });
    guards.push(g2);
    const c = await session(g2);
    expect((await c.query("SELECT current_user AS u")).rows[0].u).toMatch(/^v-/);
    await c.end();
  });
});

describe("lease and token are renewed while the session lasts", () => {
  it("a session outlives the 4 s lease and token TTLs several times over", async () => {
    const g = await guard(vaultPolicy({ path: "database/creds/short", auth: { role: "airlock-short" } }));
    const c = await session(g);
    const user = (await c.query("SELECT current_user AS u")).rows[0].u as string;
    const lease = g.audit.find((e) => e.operation.kind === "sql")?.credential?.lease ?? "";
    await new Promise((r) => setTimeout(r, 10_000));
    // Without renewals Vault would have revoked the lease (and dropped the role) after 4 s.
    expect((await c.query("SELECT count(*)::int AS n FROM accounts")).rows[0].n).toBe(2);
    expect(await vaultRoles(server)).toContain(user);
    const looked = await leaseLookup(lease);
    expect(looked.status).toBe(200);
    expect(await metric(g, "airlock_credential_renewals_total", { result: "ok" })).toBeGreaterThanOrEqual(3);
    await c.end();
    await expect.poll(() => vaultRoles(server), { timeout: 10_000 }).not.toContain(user);
  }, 30_000);
});

describe("a lease at its max TTL ends the session cleanly before Vault drops the role", () => {
  it("the idle session is closed with 57P01 before the 6 s max TTL; a new session gets a new role", async () => {
    const g = await guard(vaultPolicy({ path: "database/creds/capped" }));
    const c = await session(g);
    const user = (await c.query("SELECT current_user AS u")).rows[0].u as string;
    const t0 = Date.now();
    const ended = new Promise<{ code?: string; message: string }>((resolve) =>
      c.on("error", (e: Error & { code?: string }) =>
        resolve({ message: e.message, ...(e.code ? { code: e.code } : {}) }),
      ),
    );
    // Statements keep running while renewals extend the lease, then the session ends on its own.
    let ran = 0;
    while (Date.now() - t0 < 3_000) {
      expect((await c.query("SELECT count(*)::int AS n FROM accounts")).rows[0].n).toBe(2);
      ran++;
      await new Promise((r) => setTimeout(r, 200));
    }
    const err = await ended;
    const at = Date.now() - t0;
    expect(err.code).toBe("57P01");
    expect(err.message).toMatch(/reaches the end of its lifetime \(Vault max TTL\); reconnect/);
    expect(at).toBeLessThan(6_000);
    expect(ran).toBeGreaterThan(5);
    // Not a single statement failed on a revoked role, and the role is gone once the lease is.
    expect(g.audit.filter((e) => e.upstream?.error !== undefined)).toEqual([]);
    await expect.poll(() => vaultRoles(server), { timeout: 10_000 }).not.toContain(user);
    const next = await session(g);
    const nextUser = (await next.query("SELECT current_user AS u")).rows[0].u as string;
    expect(nextUser).not.toBe(user);
    await next.end();
  }, 30_000);
});

describe("Vault failures reach the agent as PostgreSQL errors; no static fallback unless listed", () => {
  it("Vault unreachable at connect: 08004 naming it; the Secret is not used", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const g = await guard(vaultPolicy({ address: closed }, true));
    const err = await connectError(g);
    expect(err.code).toBe("08004");
    expect(err.message).toContain("cannot get a database credential from Vault");
    expect(err.message).toContain(`cannot reach Vault at ${closed}`);
    const static_ = await server.sql(
      `SELECT count(*) FROM pg_stat_activity WHERE usename = '${server.users.scram.user}'`,
    );
    expect(Number(static_)).toBe(0);
    expect(
      await metric(g, "airlock_credentials_issued_total", { source: "vault", result: "unreachable" }),
    ).toBe(1);
  });

  it("with fallback: secretRef the session runs under the static Secret instead", async () => {
    const closed = `http://127.0.0.1:${await freePort()}`;
    const g = await guard(vaultPolicy({ address: closed, fallback: "secretRef" }, true));
    const c = await session(g);
    expect((await c.query("SELECT current_user AS u")).rows[0].u).toBe(server.users.scram.user);
    await c.end();
    expect(
      await metric(g, "airlock_credentials_issued_total", { source: "secretRef", result: "fallback" }),
    ).toBe(1);
  });

  it("a database role the Vault policy does not grant: 28000 with Vault's reason", async () => {
    const g = await guard(vaultPolicy({ path: "database/creds/other" }));
    const err = await connectError(g);
    expect(err.code).toBe("28000");
    expect(err.message).toMatch(
      /^Vault refused the Airlock sidecar a database credential: read database\/creds\/other: GET \/v1\/database\/creds\/other answered 403: permission denied$/,
    );
  });

  it("a Kubernetes auth role not bound to the sidecar's service account: 28000", async () => {
    const g = await guard(vaultPolicy({ auth: { role: "someone-else" } }));
    const err = await connectError(g);
    expect(err.code).toBe("28000");
    expect(err.message).toContain("Vault login (auth/kubernetes, role someone-else)");
  });

  it("a token for another audience than the Vault role's: 28000", async () => {
    // Projected for audience "elsewhere" (as the injector would for a policy saying so); the Vault
    // role only accepts AUDIENCE.
    const jwt = await connect().kubectl([
      "create",
      "token",
      "agent",
      "-n",
      fx.namespace,
      "--audience",
      "elsewhere",
    ]);
    await writeFile(join(fx.tokenDir, vaultTokenFile("elsewhere")), jwt.stdout.trim());
    const g = await guard(vaultPolicy({ auth: { role: "airlock", audience: "elsewhere" } }));
    const err = await connectError(g);
    expect(err.code).toBe("28000");
    expect(err.message).toMatch(
      /Vault login \(auth\/kubernetes, role airlock\): POST \/v1\/auth\/kubernetes\/login answered 403/,
    );
  });

  it("no token projected for the policy's audience: 08004 naming the file", async () => {
    const g = await guard(vaultPolicy({ auth: { role: "airlock", audience: "never-projected" } }));
    const err = await connectError(g);
    expect(err.code).toBe("08004");
    expect(err.message).toContain(
      `the service-account token for Vault is not mounted at ${join(fx.tokenDir, vaultTokenFile("never-projected"))}`,
    );
  });
});

describe("revocation failures are retried and counted", () => {
  // Vault behind a relay the test cuts while the session ends.
  async function throughRelay() {
    const r = relay(new URL(vault.address));
    const port = await r.up();
    const g = await startGuard(vaultPolicy({ address: `http://127.0.0.1:${port}` }), {
      credentials: { tokenDir: fx.tokenDir, revokeRetry: { attempts: 4, firstDelayMs: 300 } },
    });
    guards.push(g);
    return { r, g };
  }

  it("Vault back during the retries: the lease is revoked, the retries counted", async () => {
    const { r, g } = await throughRelay();
    const c = await session(g);
    const user = (await c.query("SELECT current_user AS u")).rows[0].u as string;
    await r.down();
    await c.end();
    await expect
      .poll(() => metric(g, "airlock_credential_revocations_total", { result: "retried" }))
      .toBeGreaterThanOrEqual(1);
    expect(await vaultRoles(server)).toContain(user);
    await r.up();
    await expect.poll(() => vaultRoles(server), { timeout: 10_000 }).not.toContain(user);
    expect(await metric(g, "airlock_credential_revocations_total", { result: "revoked" })).toBe(1);
    expect(await metric(g, "airlock_credential_revocations_total", { result: "failed" })).toBe(0);
    await r.down();
  });

  it("Vault gone for good: counted as failed; the lease TTL is what ends the credential", async () => {
    const { r, g } = await throughRelay();
    const c = await session(g);
    const user = (await c.query("SELECT current_user AS u")).rows[0].u as string;
    await r.down();
    await c.end();
    // 4 attempts at the lease, then 4 at the token: 300+600+1200 ms of back-off each.
    await expect
      .poll(() => metric(g, "airlock_credential_revocations_total", { result: "failed" }), {
        timeout: 15_000,
      })
      .toBe(1);
    expect(await metric(g, "airlock_credential_revocations_total", { result: "retried" })).toBe(6);
    expect(await vaultRoles(server)).toContain(user);
    // Clean up what this test left (as Vault would at the TTL).
    const lease = g.audit.find((e) => e.operation.kind === "sql")?.credential?.lease ?? "";
    await vault.api("PUT", "sys/leases/revoke", { lease_id: lease });
  }, 30_000);
});

describe("drain revokes what the sidecar holds", () => {
  it("credentials.drain() revokes the lease of an open session", async () => {
    const g = await guard(vaultPolicy({}));
    const c = await session(g);
    const user = (await c.query("SELECT current_user AS u")).rows[0].u as string;
    // The drain ends the idle session at once, as PostgreSQL's own shutdown does.
    const ended = new Promise<string | undefined>((resolve) =>
      c.on("error", (e: Error & { code?: string }) => resolve(e.code)),
    );
    await g.handler.drain();
    expect(await ended).toBe("57P01");
    await g.ctx.credentials.drain();
    expect(g.ctx.credentials.held).toBe(0);
    expect(await vaultRoles(server)).not.toContain(user);
    await c.end().catch(() => {});
  });
});
