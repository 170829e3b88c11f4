// Fault: SIGTERM (the kubelet's, or after the preStop hook) while agents are busy. The real
// `airlock sidecar` process, a real PostgreSQL with log_statement=all and a real HTTP upstream
// that logs every request it receives; concurrent node-postgres and HTTP clients through the
// sidecar's listeners; SIGTERM mid-load. Then three accounts are compared:
// - what the upstreams saw (PostgreSQL's statement log lines, the HTTP server's request log),
// - what the sidecar audited (its stdout, read as a log collector would),
// - what the clients were answered.
// Audit events = operations: none lost, none invented. And the way sessions end: each PostgreSQL
// session at its next boundary outside a transaction with 57P01 (a transaction in progress
// commits first), HTTP requests in flight answered, the process exiting 0 well inside the drain
// deadline.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, type PostgresServer } from "../harness/postgres.ts";
import type { Upstream } from "../http/harness.ts";
import { loadTable, MARK, serverLog, serverStatements, startLoad } from "./load.ts";
import { type Standalone, standalone } from "./setup.ts";
import { ofConnection, type SidecarProcess, spawnSidecar, type Workdir } from "./sidecar-process.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let fx: Standalone;
let server: PostgresServer;
let upstream: Upstream;
let w: Workdir;
let dbPort: number;
let apiPort: number;

beforeAll(async () => {
  // The upstream takes its time so that requests are in flight when the signal comes.
  fx = await standalone("drain", {
    role: "fault_agent",
    sql: loadTable("fault_agent"),
    statementLog: true,
    httpDelayMs: { base: 10, jitter: 40 },
  });
  ({ server, upstream, w } = fx);
  [dbPort, apiPort] = [await freePort(), await freePort()];
});

afterAll(() => fx?.close());

const policy = () => fx.policyFile("drain", dbPort, apiPort);

describe("SIGTERM under load", () => {
  let sc: SidecarProcess;

  it("every operation the upstreams saw has its one audit event and every audit event an operation; sessions end at a boundary with 57P01", async () => {
    sc = await spawnSidecar(w, { policies: [await policy()] });
    const load = startLoad({ port: dbPort, database: server.database }, apiPort);

    let signal: () => void = () => {};
    const signalSent = new Promise<void>((r) => {
      signal = r;
    });
    // A transaction open when the signal comes: it must be allowed to commit.
    const longTx = (async () => {
      const c = new pg.Client({ host: "127.0.0.1", port: dbPort, user: "agent", database: server.database });
      let ended: (Error & { code?: string }) | undefined;
      c.on("error", (e) => {
        ended ??= e; // the FATAL first, then "Connection terminated"
      });
      await c.connect();
      await c.query(`${MARK} BEGIN`);
      await c.query(`${MARK} INSERT INTO fault_load (id, client) VALUES (-1, 0)`);
      await signalSent;
      await sleep(800); // draining meanwhile
      await c.query(`${MARK} INSERT INTO fault_load (id, client) VALUES (-2, 0)`);
      const commit = await c.query(`${MARK} COMMIT`);
      await expect.poll(() => ended?.code, { timeout: 5_000 }).toBe("57P01");
      await c.end().catch(() => {});
      return { commit: commit.command, ended };
    })();

    // Signal once the load is well under way (the first sessions load the catalog).
    await expect.poll(() => ofConnection(sc.audit(), "db").length, { timeout: 20_000 }).toBeGreaterThan(300);
    await sleep(1_000);
    const signalled = Date.now();
    sc.kill("SIGTERM");
    signal();
    const exit = await sc.exited;
    const exitedAfterMs = Date.now() - signalled;
    load.stop();
    const [pgTallies, httpTallies, tx] = await Promise.all([
      Promise.all(load.pg),
      Promise.all(load.http),
      longTx,
    ]);

    expect(exit, sc.stderr()).toEqual({ code: 0, signal: null });
    // The long transaction was in progress: the drain waited for it (~0.8 s after the signal).
    expect(exitedAfterMs).toBeGreaterThanOrEqual(700);
    expect(exitedAfterMs).toBeLessThan(10_000);
    expect(tx.commit).toBe("COMMIT");
    expect(tx.ended?.message).toMatch(/Airlock sidecar is shutting down/);

    // Every looping session ended with 57P01, none inside a transaction.
    for (const t of pgTallies) {
      expect(t.ended, JSON.stringify(t.ended)).toMatchObject({ code: "57P01", inTransaction: false });
    }

    // PostgreSQL: statement log lines = audit events = answers the clients got.
    const audit = ofConnection(sc.audit(), "db");
    const acked = pgTallies.reduce((n, t) => n + t.acked, 0) + 4; // + the long transaction's 4
    await expect.poll(() => serverStatements(server).length, { timeout: 5_000 }).toBe(audit.length);
    expect(audit.length).toBe(acked);
    // Nothing was cut: every event says the server completed it.
    const notCompleted = audit.filter(
      (e) => e.upstream?.error !== undefined || e.upstream?.status === undefined,
    );
    expect(notCompleted).toEqual([]);
    // Rows the server holds = inserts audited = inserts the clients were told committed.
    const committed = pgTallies.flatMap((t) => t.committedIds).length + 2;
    const rows = Number(await server.sql("SELECT count(*) FROM fault_load"));
    expect(rows).toBe(committed);
    expect(audit.filter((e) => e.upstream?.status === "INSERT 0 1").length).toBe(committed);
    // Upstream sessions were ended by a Terminate, not dropped with a transaction open.
    const log = serverLog(server);
    expect(log).not.toMatch(/open transaction/);

    // HTTP: requests the upstream logged = audit events = 200s the clients got.
    const httpAudit = ofConnection(sc.audit(), "api");
    const ok = httpTallies.reduce((n, t) => n + t.ok, 0);
    expect(upstream.requests.length).toBe(httpAudit.length);
    expect(httpAudit.length).toBe(ok);
    expect(httpAudit.every((e) => e.upstream?.status === 200)).toBe(true);
    for (const t of httpTallies) expect(t.failed).toBeDefined(); // each ran until the sidecar stopped

    console.log(
      `drain: exit ${exitedAfterMs} ms after SIGTERM; postgres ${serverStatements(server).length} logged = ${audit.length} audited = ${acked} answered, ${rows} rows = ${committed} committed; http ${upstream.requests.length} received = ${httpAudit.length} audited = ${ok} answered`,
    );
  }, 45_000);

  it("the drain deadline ends what is left: an idle transaction rolls back, a statement in flight is audited as not completed", async () => {
    sc = await spawnSidecar(w, { policies: [await policy()], extraArgs: ["--drain-timeout", "2"] });
    const client = async () => {
      const c = new pg.Client({ host: "127.0.0.1", port: dbPort, user: "agent", database: server.database });
      const errors: (Error & { code?: string })[] = [];
      c.on("error", (e) => errors.push(e));
      await c.connect();
      return { c, errors };
    };
    const holder = await client();
    const waiter = await client();
    const logged = serverStatements(server).length;
    await holder.c.query(`${MARK} BEGIN`);
    await holder.c.query(`${MARK} INSERT INTO fault_load (id, client) VALUES (-10, 0)`);
    await holder.c.query(`${MARK} LOCK TABLE fault_load IN ACCESS EXCLUSIVE MODE`);
    // Blocked on the holder's lock until the deadline ends both sessions.
    const blocked = waiter.c
      .query(`${MARK} SELECT count(*) FROM fault_load`)
      .catch((e: Error & { code?: string }) => e);
    await expect.poll(() => serverStatements(server).length - logged, { timeout: 5_000 }).toBe(4);

    const signalled = Date.now();
    sc.kill("SIGTERM");
    const exit = await sc.exited;
    const ms = Date.now() - signalled;
    expect(exit, sc.stderr()).toEqual({ code: 0, signal: null });
    expect(ms).toBeGreaterThanOrEqual(1_900);
    expect(ms).toBeLessThan(6_000);

    const ended = await blocked;
    expect(ended).toMatchObject({ code: "57P01", message: expect.stringMatching(/drain deadline passed/) });
    await expect.poll(() => holder.errors[0]?.code).toBe("57P01");
    await holder.c.end().catch(() => {});
    await waiter.c.end().catch(() => {});
    expect(sc.stdout()).toMatch(/postgres: drain deadline passed; ending the sessions left/);

    // The held transaction never committed.
    expect(await server.sql("SELECT count(*) FROM fault_load WHERE id = -10")).toBe("0");
    // Four statements reached the server, four audit events: three completed, and the one
    // in flight says it did not complete (no status), never "done".
    const audit = ofConnection(sc.audit(), "db");
    expect(serverStatements(server).length - logged).toBe(4);
    expect(audit.map((e) => e.upstream)).toEqual([
      { status: "BEGIN" },
      { status: "INSERT 0 1" },
      { status: "LOCK TABLE" },
      { error: "session_closed" },
    ]);
  }, 30_000);
});
