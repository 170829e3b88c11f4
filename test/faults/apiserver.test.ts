// Faults around the API server, with the sidecar in Kubernetes mode in its own process (policies
// from AgentAccessPolicies, approvals as AccessRequests), a real PostgreSQL with log_statement=all
// and the shared kube-apiserver behind a relay the test cuts:
// - SIGKILL while a statement waits for approval: nothing ran; the AccessRequest stays Pending; a
//   restarted sidecar's retry of the same statement re-attaches to it (no second request), and the
//   approval lets exactly one execution through;
// - API server unreachable at start: not ready, nothing listens (fail closed), until it is back;
// - unreachable mid-run: the last good policy stays in force, a statement that needs approval
//   fails closed at its timeout, and a policy change made during the outage applies after it;
// - a pod no policy selects: not ready, its connections refused.
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Rule } from "../../api/src/index.ts";
import { type Cluster, plugin } from "../approvals/cluster.ts";
import { apply, connect } from "../envtest/connect.ts";
import { freePort, type PostgresServer } from "../harness/postgres.ts";
import type { Relay } from "../harness/relay.ts";
import { MARK, serverStatements } from "./load.ts";
import { type InCluster, inCluster } from "./setup.ts";
import { ofConnection, type SidecarProcess } from "./sidecar-process.ts";

const k8s = connect();
let fx: InCluster;
let c: Cluster;
let server: PostgresServer;
let link: Relay;
let linkPort: number;
let dbPort: number;
const running: SidecarProcess[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const policy = (extraRules: Rule[] = []) =>
  fx.policy("faults", dbPort, [
    ...extraRules,
    { name: "read", action: "allow", match: { sql: { statements: ["read"] } } },
    {
      name: "delete-needs-dba",
      action: "requireApproval",
      match: { sql: { statements: ["delete"] } },
      approval: { approvers: { groups: ["dba"] }, timeout: "45s" },
    },
    {
      name: "update-short",
      action: "requireApproval",
      match: { sql: { statements: ["update"] } },
      approval: { approvers: { groups: ["dba"] }, timeout: "2s" },
    },
  ]);

const applyPolicy = (p: unknown) => apply(k8s, p);

async function start(pod: string, opts: Parameters<InCluster["spawn"]>[2] = {}) {
  const sc = await fx.spawn(pod, linkPort, opts);
  running.push(sc);
  return sc;
}

const agent = async () => {
  const cl = new pg.Client({ host: "127.0.0.1", port: dbPort, user: "agent", database: server.database });
  cl.on("error", () => {});
  await cl.connect();
  return cl;
};

const pendingPostgres = async () =>
  (await c.list()).filter(
    (o) => o.spec.operation.protocol === "postgres" && (o.status?.phase ?? "Pending") === "Pending",
  );

const logged = (pattern: RegExp) => serverStatements(server).filter((l) => pattern.test(l)).length;

beforeAll(async () => {
  fx = await inCluster(k8s, "faults", {
    role: "fault_agent",
    sql: "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT i, 'v' || i FROM generate_series(1, 10) i; GRANT SELECT, UPDATE, DELETE ON items TO fault_agent",
    statementLog: true,
  });
  ({ c, server, link } = fx);
  dbPort = await freePort();
  linkPort = await link.up();
  await applyPolicy(policy());
});

afterAll(async () => {
  for (const sc of running) {
    sc.kill("SIGKILL");
    await sc.exited;
  }
  await fx?.close();
});

describe("the sidecar killed while a statement waits for approval", () => {
  it("nothing runs; the request stays Pending; after a restart the retry re-attaches and runs once when approved", async () => {
    const first = await start("agent-k");
    const cl = await agent();
    const text = `${MARK} DELETE FROM items WHERE id = 1`;
    const held = cl.query(text).then(
      () => "completed",
      (e: Error) => e.message,
    );
    await expect.poll(async () => (await pendingPostgres()).length, { timeout: 20_000 }).toBe(1);
    const [req] = await pendingPostgres();
    const name = req?.metadata.name as string;

    first.kill("SIGKILL");
    await first.exited;
    expect(await held).toMatch(/Connection terminated/);
    await cl.end().catch(() => {});
    // Not forwarded, not audited as done, the row still there, the request still Pending.
    expect(logged(/DELETE/)).toBe(0);
    expect(ofConnection(first.audit(), "db").filter((e) => e.upstream?.status !== undefined)).toEqual([]);
    expect(await server.sql("SELECT count(*) FROM items WHERE id = 1")).toBe("1");
    expect((await c.get(name)).status?.phase ?? "Pending").toBe("Pending");

    const second = await start("agent-k");
    const again = await agent();
    const retried = again.query(text);
    await sleep(1_000);
    // The same request, not a second one.
    expect((await pendingPostgres()).map((o) => o.metadata.name)).toEqual([name]);
    expect(logged(/DELETE/)).toBe(0);
    expect((await plugin(["approve", name, "-n", c.ns], c.users.ann)).code).toBe(0);
    expect((await retried).command).toBe("DELETE");
    await again.end();
    expect(logged(/DELETE/)).toBe(1);
    expect(await server.sql("SELECT count(*) FROM items WHERE id = 1")).toBe("0");
    const done = ofConnection(second.audit(), "db").filter((e) => e.upstream?.status === "DELETE 1");
    expect(done).toHaveLength(1);
    expect(done[0]).toMatchObject({ approval: { request: name, approvers: ["ann"] } });
    second.kill("SIGTERM");
    expect((await second.exited).code).toBe(0);
  }, 60_000);
});

describe("the API server unreachable", () => {
  it("at start: not ready and nothing listens; once it is back the sidecar syncs and serves", async () => {
    await link.down();
    const sc = await start("agent-s", { waitReady: "none" });
    await sleep(2_500);
    expect(sc.child.exitCode).toBeNull();
    const ready = await fetch(`http://127.0.0.1:${sc.adminPort}/readyz`).then(
      (r) => r.status,
      () => "refused",
    );
    expect(ready).toBe("refused"); // the startup probe fails: the agent never starts
    await expect(agent()).rejects.toThrow(/ECONNREFUSED/);

    await link.up();
    await expect
      .poll(
        () =>
          fetch(`http://127.0.0.1:${sc.adminPort}/readyz`).then(
            (r) => r.status,
            () => 0,
          ),
        { timeout: 30_000, interval: 250 },
      )
      .toBe(200);
    const cl = await agent();
    expect((await cl.query(`${MARK} SELECT count(*) AS n FROM items`)).rows[0].n).toBe("9");
    await cl.end();
    sc.kill("SIGTERM");
    await sc.exited;
  }, 60_000);

  it("mid-run: the last good policy stays; approval fails closed at its timeout; a change made meanwhile applies after", async () => {
    const sc = await start("agent-m");
    const cl = await agent();
    expect((await cl.query(`${MARK} SELECT count(*) AS n FROM items`)).rows[0].n).toBe("9");

    await link.down();
    // A change the sidecar cannot see yet: reads denied.
    await applyPolicy(
      policy([{ name: "no-reads", action: "deny", match: { sql: { statements: ["read"] } } }]),
    );
    await sleep(1_000);
    expect((await cl.query(`${MARK} SELECT count(*) AS n FROM items`)).rows[0].n).toBe("9");

    const t0 = Date.now();
    const refused = await cl
      .query(`${MARK} UPDATE items SET v = 'x' WHERE id = 2`)
      .catch((e: Error & { code?: string }) => e);
    const waited = Date.now() - t0;
    expect(refused).toMatchObject({
      code: "42501",
      message: expect.stringMatching(/approval service unreachable.*not performed/),
    });
    expect(waited).toBeGreaterThanOrEqual(1_900);
    expect(waited).toBeLessThan(10_000);
    expect(logged(/UPDATE/)).toBe(0);
    expect(ofConnection(sc.audit(), "db").at(-1)).toMatchObject({
      decision: { action: "requireApproval", rule: "update-short" },
      upstream: { error: "approval_unavailable" },
    });
    const metrics = await (await fetch(`http://127.0.0.1:${sc.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/^airlock_policy_source_up 0$/m);

    await link.up();
    await expect
      .poll(
        () =>
          cl.query(`${MARK} SELECT 1`).then(
            () => "allowed",
            (e: Error & { code?: string }) => e.code,
          ),
        { timeout: 30_000, interval: 250 },
      )
      .toBe("42501");
    await cl.end();
    await applyPolicy(policy());
    sc.kill("SIGTERM");
    await sc.exited;
  }, 60_000);

  it("a pod no policy selects is not ready and refuses its agent (fail closed)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "airlock-podinfo-"));
    await writeFile(join(dir, "namespace"), c.ns);
    await writeFile(join(dir, "pod_name"), "stranger-0");
    await writeFile(join(dir, "service_account"), "agent");
    await writeFile(join(dir, "labels"), 'app="stranger"\n');
    const sc = await start("stranger-0", { podInfoDir: dir, waitReady: false });
    const r = await fetch(`http://127.0.0.1:${sc.adminPort}/readyz`);
    expect(r.status).toBe(503);
    expect(await r.text()).toMatch(/no valid AgentAccessPolicy selects this pod/);
    await expect(agent()).rejects.toThrow(/ECONNREFUSED/);
    sc.kill("SIGTERM");
    await sc.exited;
  }, 60_000);
});
