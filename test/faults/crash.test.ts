// Fault: the sidecar process is killed outright (SIGKILL: OOM kill, node failure) while agents are
// busy and one transaction waits on a lock; then it is started again. The real `airlock sidecar`
// process, a real PostgreSQL with log_statement=all, a real HTTP upstream logging its requests.
// What must hold:
// - every agent connection fails at once (an error, not a hang);
// - nothing half-forwarded is reported as done: an audit event exists only for what the server
//   completed, every answer an agent got has its audit event, and what the upstream received but
//   nobody audited is at most what was in flight (one statement or request per connection);
// - PostgreSQL rolls the open transaction back, the statement in flight included;
// - a new sidecar on the same configuration serves new connections.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type PgUser, type PostgresServer } from "../harness/postgres.ts";
import type { Upstream } from "../http/harness.ts";
import { type HttpTally, loadTable, MARK, type PgTally, serverStatements, startLoad } from "./load.ts";
import { type Standalone, standalone } from "./setup.ts";
import { ofConnection, type SidecarProcess, spawnSidecar, type Workdir } from "./sidecar-process.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let fx: Standalone;
let server: PostgresServer;
let upstream: Upstream;
let w: Workdir;
let dbPort: number;
let apiPort: number;
let agentUser: PgUser;

beforeAll(async () => {
  fx = await standalone("crash", {
    role: "fault_agent",
    sql: `${loadTable("fault_agent")}; INSERT INTO fault_load VALUES (-5, 0)`,
    statementLog: true,
    httpDelayMs: { base: 5, jitter: 20 },
  });
  ({ server, upstream, w, user: agentUser } = fx);
  [dbPort, apiPort] = [await freePort(), await freePort()];
});

afterAll(() => fx?.close());

const policy = () => fx.policyFile("crash", dbPort, apiPort);

/** Sessions of the agent's role the server still has (the direct lock holder excluded). */
const agentBackends = async (except: number) =>
  Number(
    await server.sql(
      `SELECT count(*) FROM pg_stat_activity WHERE usename = 'fault_agent' AND pid <> ${except}`,
    ),
  );

/** Settles within `ms` or says it hung. */
const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([
    p,
    sleep(ms).then(() => {
      throw new Error(`${what} did not settle within ${ms} ms of the kill`);
    }),
  ]);

describe("SIGKILL mid-load and mid-transaction, then a restart", () => {
  let sc: SidecarProcess;
  let committedAcked = 0;

  it("agents' connections fail at once; only what the server completed is audited; the open transaction rolls back", async () => {
    sc = await spawnSidecar(w, { policies: [await policy()] });
    const load = startLoad({ port: dbPort, database: server.database }, apiPort);

    // A lock held directly on the server, and an agent transaction whose UPDATE waits for it.
    const holder = new pg.Client({
      host: "127.0.0.1",
      port: server.port,
      ...agentUser,
      database: server.database,
    });
    await holder.connect();
    const holderPid = Number((await holder.query("SELECT pg_backend_pid() AS p")).rows[0].p);
    await holder.query("BEGIN");
    await holder.query("SELECT * FROM fault_load WHERE id = -5 FOR UPDATE");
    const agent = new pg.Client({
      host: "127.0.0.1",
      port: dbPort,
      user: "agent",
      database: server.database,
    });
    const agentErrors: Error[] = [];
    agent.on("error", (e) => agentErrors.push(e));
    await agent.connect();
    await agent.query(`${MARK} BEGIN`);
    await agent.query(`${MARK} INSERT INTO fault_load (id, client) VALUES (-1, 0)`);
    const update = agent.query(`${MARK} UPDATE fault_load SET client = 99 WHERE id = -5`).then(
      () => "completed",
      (e: Error) => e.message,
    );

    await expect.poll(() => ofConnection(sc.audit(), "db").length, { timeout: 20_000 }).toBeGreaterThan(300);
    await sleep(500);
    sc.kill("SIGKILL");
    const exit = await sc.exited;
    expect(exit.signal).toBe("SIGKILL");
    const killedAt = Date.now();
    load.stop();

    // Every client hears at once that its connection is gone.
    const [pgTallies, httpTallies, updated] = (await within(
      Promise.all([Promise.all(load.pg), Promise.all(load.http), update]),
      3_000,
      "a client",
    )) as [PgTally[], HttpTally[], string];
    expect(Date.now() - killedAt).toBeLessThan(3_000);
    for (const t of pgTallies)
      expect(t.ended?.message).toMatch(/Connection terminated|ECONNRESET|read ECONNRESET/);
    for (const t of httpTallies) expect(t.failed).toMatch(/ECONNRESET|ECONNREFUSED|socket hang up/);
    expect(updated).toMatch(/Connection terminated/);
    await agent.end().catch(() => {});

    // PostgreSQL: the agent's backends end; the waiting UPDATE and the open transaction roll back
    // once the lock is released.
    await expect.poll(() => agentBackends(holderPid), { timeout: 10_000 }).toBeLessThanOrEqual(1);
    await holder.query("ROLLBACK");
    await holder.end();
    await expect.poll(() => agentBackends(-1), { timeout: 10_000 }).toBe(0);
    expect(await server.sql("SELECT client FROM fault_load WHERE id = -5")).toBe("0");
    expect(await server.sql("SELECT count(*) FROM fault_load WHERE id = -1")).toBe("0");

    // Accounts. Audited ⊆ logged by the server; answered ⊆ audited; the gap between what the
    // server received and what was audited is at most one statement per session.
    const audit = ofConnection(sc.audit(), "db");
    const logged = serverStatements(server).length;
    const answered = pgTallies.reduce((n, t) => n + t.acked, 0) + 2; // + BEGIN, INSERT of the waiter
    expect(audit.every((e) => typeof e.upstream?.status === "string" && e.upstream.error === undefined)).toBe(
      true,
    );
    expect(audit.length).toBeLessThanOrEqual(logged);
    expect(logged - audit.length).toBeLessThanOrEqual(pgTallies.length + 1);
    expect(answered).toBeLessThanOrEqual(audit.length);
    // The UPDATE reached the server (it waited there) but never completed: no event for it.
    expect(
      audit.some((e) => e.operation.kind === "sql" && e.operation.statements[0]?.kind === "update"),
    ).toBe(false);
    // Rows: every commit an agent was told about is there; at most one unanswered commit per session more.
    committedAcked = pgTallies.flatMap((t) => t.committedIds).length;
    const rows = Number(await server.sql("SELECT count(*) FROM fault_load WHERE id > 0"));
    expect(rows).toBeGreaterThanOrEqual(committedAcked);
    expect(rows - committedAcked).toBeLessThanOrEqual(2 * pgTallies.length);

    const httpAudit = ofConnection(sc.audit(), "api");
    const ok = httpTallies.reduce((n, t) => n + t.ok, 0);
    expect(httpAudit.every((e) => e.upstream?.status === 200)).toBe(true);
    expect(ok).toBeLessThanOrEqual(httpAudit.length);
    expect(httpAudit.length).toBeLessThanOrEqual(upstream.requests.length);
    expect(upstream.requests.length - httpAudit.length).toBeLessThanOrEqual(httpTallies.length);

    console.log(
      `crash: postgres ${logged} received, ${audit.length} audited, ${answered} answered, ${rows} rows for ${committedAcked} acknowledged; http ${upstream.requests.length} received, ${httpAudit.length} audited, ${ok} answered`,
    );
  }, 45_000);

  it("a restarted sidecar serves new connections on the same configuration", async () => {
    const again = await spawnSidecar(w, { policies: [await policy()] });
    try {
      const c = new pg.Client({ host: "127.0.0.1", port: dbPort, user: "agent", database: server.database });
      await c.connect();
      const r = await c.query(`${MARK} SELECT count(*) AS n FROM fault_load WHERE id > 0`);
      expect(Number(r.rows[0].n)).toBeGreaterThanOrEqual(committedAcked);
      await c.end();
      const res = await fetch(`http://127.0.0.1:${apiPort}/after-restart`);
      expect(res.status).toBe(200);
      await expect
        .poll(() => again.audit().map((e) => `${e.connection} ${e.upstream?.status}`))
        .toEqual(["db SELECT 1", "api 200"]);
    } finally {
      again.kill("SIGTERM");
      await again.exited;
    }
  }, 45_000);
});
