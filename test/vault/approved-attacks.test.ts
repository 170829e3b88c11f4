// credentials.vault.approvedPath against an agent that sends arbitrary protocol bytes (real Vault +
// PostgreSQL, as approved-credentials.test.ts): pipelining around the approved statement, messages
// that do not belong to its batch, the agent leaving or cancelling mid-run, the server failing it,
// a drain. What must hold: the approved role runs the approved statement and nothing else, the
// session's idea of the server's state does not drift, nothing hangs, the lease is revoked, and
// the audit names the lease that ran the statement.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import type { ApprovalGate, ApprovalInput } from "../../sidecar/src/approvals/gate.ts";
import { cancelRequest, cstr, int16, message, T } from "../../sidecar/src/protocols/postgres/protocol.ts";
import { connect } from "../envtest/connect.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { startVault, type VaultServer } from "../harness/vault.ts";
import {
  bindMessage,
  copyData,
  copyDone,
  describeMessage,
  errorOf,
  executeMessage,
  type Msg,
  parseMessage,
  queryMessage,
  RawClient,
  rowValues,
  sleep,
  syncMessage,
} from "../postgres/raw-client.ts";
import { type GuardedPostgres, startGuard } from "../postgres/support.ts";
import { setUpVault, type VaultFixture, vaultPgPolicy, vaultSources } from "./setup.ts";

let server: PostgresServer;
let vault: VaultServer;
let fx: VaultFixture;
let g: GuardedPostgres;
const asked: ApprovalInput[] = [];

/** true: the approver never answers (the wait ends, still pending, only when it is aborted). */
let hold = false;
const gate: ApprovalGate = {
  async request(input) {
    asked.push(input);
    const request = `areq-${asked.length}`;
    if (hold)
      return new Promise((resolve) =>
        input.signal.addEventListener(
          "abort",
          () => resolve({ approved: false, request, status: "pending" }),
          {
            once: true,
          },
        ),
      );
    return { approved: true, request, approvers: ["dana"] };
  },
};

function policy(): AgentAccessPolicy {
  return vaultPgPolicy(
    server,
    vault,
    [
      {
        name: "read",
        action: "allow",
        match: { sql: { statements: ["read", "transaction", "set", "other"] } },
      },
      { name: "inbox", action: "allow", match: { sql: { statements: ["copyFrom"], tables: ["inbox"] } } },
      {
        name: "copy-needs-dba",
        action: "requireApproval",
        match: { sql: { statements: ["copyFrom"], tables: ["accounts"] } },
        approval: { approvers: { groups: ["dba"] } },
      },
      {
        name: "changes-need-dba",
        action: "requireApproval",
        match: { sql: { statements: ["update", "delete"] } },
        approval: { approvers: { groups: ["dba"] } },
      },
    ],
    { approvedPath: "database/creds/writer" },
  );
}

beforeAll(async () => {
  const k8s = connect();
  [server, vault] = await Promise.all([startPostgres(), startVault()]);
  fx = await setUpVault(vault, server, k8s);
  // Every session role may COPY into inbox (a COPY FROM STDIN in progress on the session).
  await server.sql(
    "INSERT INTO accounts SELECT i, 'u' || i FROM generate_series(3, 40) i; CREATE TABLE inbox (x text); GRANT INSERT ON inbox TO PUBLIC",
  );
  g = await startGuard(policy(), {
    credential: server.users.scram,
    approvals: gate,
    credentials: vaultSources(fx),
  });
});

afterAll(async () => {
  await g?.close();
  await vault?.stop();
  await server?.stop();
});

const owner = async (id: number) => (await server.sql(`SELECT owner FROM accounts WHERE id = ${id}`)).trim();
const leaseStatus = async (lease: string) =>
  (await vault.raw("PUT", "sys/leases/lookup", { lease_id: lease })).status;
/** Leases of the approved role that audit events name. */
const approvedLeases = () =>
  new Set(
    g.audit.map((e) => e.credential?.lease ?? "").filter((l) => l.startsWith("database/creds/writer/")),
  );
/** Every approved lease ever named is revoked (lookups answer 400), and the sidecar holds none. */
async function allApprovedRevoked() {
  for (const lease of approvedLeases())
    await expect.poll(() => leaseStatus(lease), { timeout: 10_000 }).toBe(400);
}

/** Credentials minted for approved statements so far. */
const approvedIssued = async () =>
  ((await g.metrics.registry.getSingleMetric("airlock_credentials_issued_total")?.get())?.values ?? [])
    .filter((v) => v.labels.source === "vault-approved")
    .reduce((n, v) => n + v.value, 0);

const keys = new WeakMap<RawClient, { pid: number; secret: number }>();

async function raw(): Promise<RawClient> {
  const c = await RawClient.connect(g.port);
  const k = (await c.startup()).find((m) => m.type === "K");
  if (k) keys.set(c, { pid: k.payload.readInt32BE(0), secret: k.payload.readInt32BE(4) });
  return c;
}

/** A superuser connection holding a row lock: an approved statement on that row waits for it. */
async function lockRow(id: number): Promise<{ release(): Promise<void> }> {
  const c = new pg.Client({
    host: server.socketDir,
    port: server.port,
    user: server.superuser,
    database: server.database,
  });
  await c.connect();
  await c.query("BEGIN");
  await c.query(`SELECT 1 FROM accounts WHERE id = ${id} FOR UPDATE`);
  return {
    async release() {
      await c.query("ROLLBACK").catch(() => {});
      await c.end();
    },
  };
}

/** Waits until a backend of a Vault-minted writer role is waiting on a lock. */
async function approvedWaiting() {
  await expect
    .poll(
      async () =>
        (
          await server.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE usename LIKE 'v-%writer%' AND wait_event_type = 'Lock'",
          )
        ).trim(),
      { timeout: 10_000 },
    )
    .toBe("1");
}

const codes = (msgs: Msg[]) => msgs.filter((m) => m.type === "E").map((m) => errorOf(m)?.code);
const types = (msgs: Msg[]) => msgs.map((m) => m.type).join("");

describe("what precedes the approved statement in the socket", () => {
  it("a Query behind an extended batch without Sync (no Flush): refused before anyone is asked, no hang", async () => {
    const c = await raw();
    try {
      asked.length = 0;
      await c.write(
        Buffer.concat([
          parseMessage("", "SELECT 1"),
          bindMessage("", "", []),
          executeMessage(""),
          queryMessage("UPDATE accounts SET owner = 'mallory' WHERE id = 3"),
        ]),
      );
      const r = await c.until("Z");
      expect(codes(r)).toContain("42501");
      expect(errorOf(r.find((m) => m.type === "E"))?.message).toMatch(/send Sync before/);
      expect(asked).toHaveLength(0);
      expect(await owner(3)).toBe("u3");
      // The session goes on: the agent's Sync ends its batch.
      await c.write(syncMessage());
      expect(types(await c.until("Z"))).toBe("Z");
      const q = await c.query("SELECT current_user");
      expect(types(q)).toMatch(/TDCZ$/);
    } finally {
      c.close();
    }
  });

  it("a Query behind an extended batch the server is skipping (error, Flush): refused before anyone is asked", async () => {
    const c = await raw();
    try {
      asked.length = 0;
      const from = g.audit.length;
      await c.write(
        Buffer.concat([
          parseMessage("", "SELECT 1/0"),
          bindMessage("", "", []),
          executeMessage(""),
          message(T.Flush),
        ]),
      );
      const failed = await c.until("E");
      expect(codes(failed)).toEqual(["22012"]);
      await c.write(queryMessage("UPDATE accounts SET owner = 'mallory' WHERE id = 3"));
      await c.write(syncMessage());
      // The server skips to Sync, so the refusal's own Sync answers first, then the agent's.
      const r = [...(await c.until("Z")), ...(await c.until("Z"))];
      expect(types(r)).toBe("ZZ");
      expect(asked).toHaveLength(0);
      expect(await owner(3)).toBe("u3");
      // Nothing ran under an approved lease unrecorded: the refusal is the only event of it.
      expect(g.audit.slice(from).filter((e) => e.approval)).toEqual([]);
      const q = await c.query("SELECT 1");
      expect(types(q)).toMatch(/TDCZ$/);
    } finally {
      c.close();
    }
  });

  it("a Query while a COPY FROM STDIN of the session is open: nobody is asked, nothing hangs", async () => {
    const c = await raw();
    try {
      asked.length = 0;
      await c.write(queryMessage("COPY inbox FROM STDIN"));
      expect((await c.next())?.type).toBe("G");
      await c.write(Buffer.concat([copyData("a\n"), queryMessage("DELETE FROM accounts WHERE id = 3")]));
      // Either the session answers (and goes on) or it ends: it must not wait forever.
      const r = await c.until("Z").catch(() => [] as Msg[]);
      expect(asked).toHaveLength(0);
      expect(await owner(3)).toBe("u3");
      expect(r.length > 0 || c.closed).toBe(true);
    } finally {
      c.close();
    }
  });

  it("pipelined behind a BEGIN not answered yet: refused before anyone is asked (it could not run alone)", async () => {
    const c = await raw();
    try {
      asked.length = 0;
      await c.write(
        Buffer.concat([
          queryMessage("BEGIN"),
          queryMessage("UPDATE accounts SET owner = 'tx' WHERE id = 32"),
        ]),
      );
      expect(types(await c.until("Z"))).toBe("CZ");
      const r = await c.until("Z");
      expect(codes(r)).toEqual(["42501"]);
      expect(errorOf(r.find((m) => m.type === "E"))?.message).toMatch(/transaction control before it/);
      expect(asked).toHaveLength(0);
      expect(types(await c.query("ROLLBACK"))).toBe("CZ");
      expect(await owner(32)).toBe("u32");
    } finally {
      c.close();
    }
  });

  it("pipelined behind an approved Query and an approved batch: the next statements run as the session's role", async () => {
    const c = await raw();
    try {
      const me = rowValues((await c.query("SELECT current_user")).find((m) => m.type === "D") as Msg)[0];
      asked.length = 0;
      await c.write(
        Buffer.concat([
          queryMessage("UPDATE accounts SET owner = 'p1' WHERE id = 4"),
          queryMessage("SELECT current_user"),
          parseMessage("", "UPDATE accounts SET owner = 'p2' WHERE id = 5"),
          bindMessage("", "", []),
          executeMessage(""),
          syncMessage(),
          parseMessage("", "SELECT current_user"),
          bindMessage("", "", []),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      const first = await c.until("Z");
      expect(codes(first)).toEqual([]);
      const second = await c.until("Z");
      expect(rowValues(second.find((m) => m.type === "D") as Msg)[0]).toBe(me);
      const third = await c.until("Z");
      expect(codes(third)).toEqual([]);
      const fourth = await c.until("Z");
      expect(rowValues(fourth.find((m) => m.type === "D") as Msg)[0]).toBe(me);
      expect(asked).toHaveLength(2);
      expect([await owner(4), await owner(5)]).toEqual(["p1", "p2"]);
      await allApprovedRevoked();
    } finally {
      c.close();
    }
  });
});

describe("inside the approved batch", () => {
  it("a second Bind of the approved statement asks again", async () => {
    const c = await raw();
    try {
      asked.length = 0;
      await c.write(
        Buffer.concat([
          parseMessage("", "UPDATE accounts SET owner = owner || '+' WHERE id = $1"),
          bindMessage("", "", ["6"]),
          executeMessage(""),
          bindMessage("", "", ["7"]),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      const r = await c.until("Z");
      expect(codes(r)).toEqual([]);
      expect(asked).toHaveLength(2);
      expect([await owner(6), await owner(7)]).toEqual(["u6+", "u7+"]);
    } finally {
      c.close();
    }
  });

  it("a second Execute of the completed portal does not run the statement twice", async () => {
    const c = await raw();
    try {
      await c.write(
        Buffer.concat([
          parseMessage("", "UPDATE accounts SET owner = owner || '+' WHERE id = 26"),
          bindMessage("", "", []),
          executeMessage(""),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      // PostgreSQL refuses to run a completed portal again (55000), which rolls the batch back.
      const r = await c.until("Z");
      expect(types(r)).toBe("12CEZ");
      expect(codes(r)).toEqual(["55000"]);
      expect(await owner(26)).toBe("u26");
    } finally {
      c.close();
    }
  });

  it("an approved COPY FROM STDIN is refused before anyone is asked; its CopyData never reaches the server", async () => {
    const c = await raw();
    try {
      asked.length = 0;
      await c.write(
        Buffer.concat([queryMessage("COPY accounts FROM STDIN"), copyData("41\tcopied\n"), copyDone()]),
      );
      const r = await c.until("Z");
      expect(errorOf(r.find((m) => m.type === "E"))?.message).toMatch(/contains copyFrom/);
      expect(asked).toHaveLength(0);
      expect(await owner(41)).toBe("");
      expect(types(await c.query("SELECT 1"))).toMatch(/TDCZ$/);
    } finally {
      c.close();
    }
  });

  it("Execute with maxRows: the portal is suspended and resumed; it commits at Sync", async () => {
    const c = await raw();
    try {
      asked.length = 0;
      await c.write(
        Buffer.concat([
          parseMessage("", "UPDATE accounts SET owner = 'many' WHERE id BETWEEN 10 AND 14 RETURNING id"),
          bindMessage("", "", []),
          executeMessage("", 2),
          executeMessage("", 2),
          executeMessage("", 0),
          syncMessage(),
        ]),
      );
      const r = await c.until("Z");
      expect(types(r)).toBe("12DDsDDsDCZ");
      expect(asked).toHaveLength(1);
      expect(await owner(12)).toBe("many");
      await allApprovedRevoked();
    } finally {
      c.close();
    }
  });

  it("Bind of a named statement prepared on the session, behind the approved Parse: refused, rolled back", async () => {
    const c = await raw();
    try {
      await c.write(
        Buffer.concat([parseMessage("p", "SELECT owner FROM accounts WHERE id = 15"), syncMessage()]),
      );
      await c.until("Z");
      asked.length = 0;
      await c.write(
        Buffer.concat([
          parseMessage("", "UPDATE accounts SET owner = 'x' WHERE id = 15"),
          bindMessage("", "p", []),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      const r = await c.until("Z");
      expect(errorOf(r.find((m) => m.type === "E"))?.message).toMatch(/unnamed statement and portal only/);
      expect(await owner(15)).toBe("u15");
      // The named statement is still the session's.
      await c.write(Buffer.concat([bindMessage("", "p", []), executeMessage(""), syncMessage()]));
      const again = await c.until("Z");
      expect(rowValues(again.find((m) => m.type === "D") as Msg)).toEqual(["u15"]);
    } finally {
      c.close();
    }
  });

  it("a FunctionCall inside the batch is refused and answered like PostgreSQL answers one", async () => {
    const c = await raw();
    try {
      asked.length = 0;
      // FunctionCall of oid 1 (any: refused before it reaches the server), no arguments.
      const call = message(T.FunctionCall, Buffer.from([0, 0, 0, 1]), int16(0), int16(0), int16(0));
      await c.write(
        Buffer.concat([
          parseMessage("", "UPDATE accounts SET owner = 'fc' WHERE id = 16"),
          bindMessage("", "", []),
          executeMessage(""),
          call,
        ]),
      );
      const r = await c.until("Z");
      expect(codes(r)).toContain("42501");
      expect(await owner(16)).toBe("u16");
    } finally {
      c.close();
    }
  });

  it("Describe and Close of named things are refused inside the batch", async () => {
    const c = await raw();
    try {
      for (const stray of [describeMessage("S", "p"), message(T.Close, Buffer.from("P"), cstr("c"))]) {
        await c.write(
          Buffer.concat([
            parseMessage("", "UPDATE accounts SET owner = 'dc' WHERE id = 17"),
            bindMessage("", "", []),
            stray,
            executeMessage(""),
            syncMessage(),
          ]),
        );
        const r = await c.until("Z");
        expect(errorOf(r.find((m) => m.type === "E"))?.message).toMatch(/unnamed statement and portal only/);
        expect(await owner(17)).toBe("u17");
      }
    } finally {
      c.close();
    }
  });

  it("asyncpg's shape (a named statement, Describe, Sync) is refused before anyone is asked, clearly", async () => {
    const c = await raw();
    try {
      asked.length = 0;
      await c.write(
        Buffer.concat([
          parseMessage("__asyncpg_stmt_1__", "UPDATE accounts SET owner = $1 WHERE id = $2"),
          describeMessage("S", "__asyncpg_stmt_1__"),
          syncMessage(),
        ]),
      );
      const r = await c.until("Z");
      expect(errorOf(r.find((m) => m.type === "E"))?.message).toMatch(
        /named prepared statements \("__asyncpg_stmt_1__"\) are not kept across it; use the unnamed statement/,
      );
      expect(asked).toHaveLength(0);
    } finally {
      c.close();
    }
  });

  it("pgx's describe-then-execute shape: each batch is approved and run on its own; both leases are revoked", async () => {
    const c = await raw();
    try {
      asked.length = 0;
      const before = approvedLeases().size;
      const held = g.ctx.credentials.held;
      const issued = await approvedIssued();
      const text = "UPDATE accounts SET owner = $1 WHERE id = $2";
      await c.write(Buffer.concat([parseMessage("", text), describeMessage("S", ""), syncMessage()]));
      expect(types(await c.until("Z"))).toBe("1tnZ");
      await c.write(
        Buffer.concat([
          parseMessage("", text),
          bindMessage("", "", ["pgx", "31"]),
          describeMessage("P", ""),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      expect(types(await c.until("Z"))).toBe("12nCZ");
      expect(asked).toHaveLength(2);
      expect(await owner(31)).toBe("pgx");
      // The describe-only batch minted no audited lease (nothing executed); the execution did.
      expect(approvedLeases().size).toBe(before + 1);
      expect(await approvedIssued()).toBe(issued + 2);
      await expect.poll(() => g.ctx.credentials.held, { timeout: 10_000 }).toBe(held);
      await allApprovedRevoked();
    } finally {
      c.close();
    }
  });

  it("the server fails the approved statement: the agent gets its error, the session goes on, the lease is revoked", async () => {
    const c = await raw();
    try {
      const r = await c.query("UPDATE accounts SET id = 1 WHERE id = 18");
      expect(codes(r)).toEqual(["23505"]);
      const event = g.audit.findLast((e) => e.approval);
      expect(event?.upstream?.error).toBe("23505");
      expect(event?.credential?.lease).toMatch(/^database\/creds\/writer\//);
      expect(types(await c.query("SELECT 1"))).toMatch(/TDCZ$/);
      await allApprovedRevoked();
    } finally {
      c.close();
    }
  });
});

describe("the approval wait ends without an answer", () => {
  it("statement_timeout ends the wait (57014): nothing is minted, the session goes on", async () => {
    await server.sql(`ALTER DATABASE ${server.database} SET statement_timeout = '800ms'`);
    hold = true;
    const c = await raw();
    try {
      const issued = await approvedIssued();
      const t0 = Date.now();
      const r = await c.query("DELETE FROM accounts WHERE id = 27");
      expect(codes(r)).toEqual(["57014"]);
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(await approvedIssued()).toBe(issued);
      expect(await owner(27)).toBe("u27");
      expect(types(await c.query("SELECT 1"))).toMatch(/TDCZ$/);
    } finally {
      hold = false;
      c.close();
      await server.sql(`ALTER DATABASE ${server.database} RESET statement_timeout`);
    }
  });

  it("a cancel request ends the wait (57014): nothing is minted; an extended batch behind it is skipped", async () => {
    hold = true;
    const c = await raw();
    try {
      const issued = await approvedIssued();
      await c.write(
        Buffer.concat([
          parseMessage("", "DELETE FROM accounts WHERE id = 28"),
          bindMessage("", "", []),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      await expect.poll(() => asked.length, { timeout: 5000 }).toBeGreaterThan(0);
      const key = keys.get(c);
      if (!key) throw new Error("no BackendKeyData");
      const k = await RawClient.connect(g.port);
      await k.write(cancelRequest(key.pid, key.secret));
      k.close();
      const r = await c.until("Z");
      expect(codes(r)).toEqual(["57014"]);
      expect(await approvedIssued()).toBe(issued);
      expect(await owner(28)).toBe("u28");
      expect(types(await c.query("SELECT 1"))).toMatch(/TDCZ$/);
    } finally {
      hold = false;
      c.close();
    }
  });
});

describe("the agent leaves, cancels, or the sidecar drains mid-run", () => {
  it("Flush without Sync, then the agent disconnects: nothing commits, the lease is revoked", async () => {
    const c = await raw();
    const held = g.ctx.credentials.held;
    await c.write(
      Buffer.concat([
        parseMessage("", "UPDATE accounts SET owner = 'flushed' WHERE id = 19"),
        bindMessage("", "", []),
        executeMessage(""),
        message(T.Flush),
      ]),
    );
    const r = await c.until("C");
    expect(types(r)).toBe("12C");
    expect(g.ctx.credentials.held).toBe(held + 1);
    c.close();
    await expect.poll(() => g.ctx.credentials.held, { timeout: 10_000 }).toBe(held - 1);
    expect(await owner(19)).toBe("u19");
    await allApprovedRevoked();
  });

  it("Terminate in the middle of the batch: nothing commits, the lease is revoked", async () => {
    const c = await raw();
    const held = g.ctx.credentials.held;
    await c.write(
      Buffer.concat([
        parseMessage("", "UPDATE accounts SET owner = 'terminated' WHERE id = 20"),
        bindMessage("", "", []),
        executeMessage(""),
        message(T.Terminate),
      ]),
    );
    await c.closedAfter();
    await expect.poll(() => g.ctx.credentials.held, { timeout: 10_000 }).toBe(held - 1);
    expect(await owner(20)).toBe("u20");
    await allApprovedRevoked();
  });

  it("the agent disconnects at any point of starting the run: every minted writer role is revoked", async () => {
    const held = g.ctx.credentials.held;
    const issued = await approvedIssued();
    for (const delayMs of [0, 5, 20, 50, 100, 200]) {
      const c = await raw();
      await c.write(queryMessage("UPDATE accounts SET owner = 'race' WHERE id = 29"));
      await sleep(delayMs);
      c.close();
    }
    await expect.poll(() => g.ctx.credentials.held, { timeout: 15_000 }).toBe(held);
    // The gauge operators watch says the same.
    const gauge = await g.metrics.registry.getSingleMetric("airlock_credential_leases")?.get();
    expect(gauge?.values.reduce((n, v) => n + v.value, 0)).toBe(held);
    await expect
      .poll(
        async () =>
          (await server.sql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%writer%'")).trim(),
        {
          timeout: 15_000,
        },
      )
      .toBe("0");
    // Not vacuous: some of them got as far as a writer role.
    expect(await approvedIssued()).toBeGreaterThan(issued);
  });

  it("the agent disconnects while the approved statement runs: the lease is revoked", async () => {
    const lock = await lockRow(21);
    const c = await raw();
    const held = g.ctx.credentials.held;
    try {
      await c.write(queryMessage("UPDATE accounts SET owner = 'gone' WHERE id = 21"));
      await approvedWaiting();
      c.close();
      await expect.poll(() => g.ctx.credentials.held, { timeout: 10_000 }).toBe(held - 1);
      await allApprovedRevoked();
    } finally {
      await lock.release();
    }
  });

  it("a cancel request during the run cancels the approved statement; the session goes on as its role", async () => {
    const lock = await lockRow(22);
    const c = await raw();
    try {
      // The agent's cancel key, from the BackendKeyData of its startup.
      const key = keys.get(c);
      if (!key) throw new Error("no BackendKeyData");
      await c.write(queryMessage("UPDATE accounts SET owner = 'cancelled' WHERE id = 22"));
      await approvedWaiting();
      const k = await RawClient.connect(g.port);
      await k.write(cancelRequest(key.pid, key.secret));
      k.close();
      const r = await c.until("Z", 10_000);
      expect(codes(r)).toEqual(["57014"]);
      await lock.release();
      expect(await owner(22)).toBe("u22");
      const me = await c.query("SELECT has_table_privilege(current_user, 'accounts', 'UPDATE')");
      expect(rowValues(me.find((m) => m.type === "D") as Msg)).toEqual(["f"]);
      await allApprovedRevoked();
    } finally {
      await lock.release();
      c.close();
    }
  });

  it("LISTEN on the session, NOTIFY during the run: the notification arrives after it, the session is sound", async () => {
    const lock = await lockRow(23);
    const c = await raw();
    try {
      const listen = await c.query("LISTEN airlock_ch");
      expect(codes(listen)).toEqual([]);
      await c.write(queryMessage("UPDATE accounts SET owner = 'notified' WHERE id = 23"));
      await approvedWaiting();
      await server.sql("NOTIFY airlock_ch, 'during'");
      await sleep(200);
      await lock.release();
      const r = await c.until("Z", 10_000);
      expect(codes(r)).toEqual([]);
      expect(await owner(23)).toBe("notified");
      const after = await c.query("SELECT 1");
      const all = [...r, ...after];
      expect(all.filter((m) => m.type === "A")).toHaveLength(1);
      expect(types(after)).toMatch(/TDCZ$/);
    } finally {
      await lock.release();
      c.close();
    }
  });

  it("a drain during the run lets it finish, then ends the session; the lease is revoked", async () => {
    const lock = await lockRow(24);
    const c = await raw();
    const held = g.ctx.credentials.held;
    try {
      await c.write(queryMessage("UPDATE accounts SET owner = 'drained' WHERE id = 24"));
      await approvedWaiting();
      const drained = g.handler.drain();
      await sleep(300);
      expect(c.closed).toBe(false);
      await lock.release();
      const r = await c.closedAfter(10_000);
      expect(types(r)).toMatch(/^CZE/);
      expect(codes(r)).toEqual(["57P01"]);
      await drained;
      expect(await owner(24)).toBe("drained");
      await expect.poll(() => g.ctx.credentials.held, { timeout: 10_000 }).toBe(held - 1);
      await allApprovedRevoked();
    } finally {
      await lock.release();
      c.close();
    }
  });
});

describe("an approved batch the agent leaves open", () => {
  let g2: GuardedPostgres;
  beforeAll(async () => {
    g2 = await startGuard(policy(), {
      credential: server.users.scram,
      approvals: gate,
      handler: { approvedBatchTimeoutMs: 1000 },
      credentials: vaultSources(fx),
    });
  });
  afterAll(async () => {
    await g2?.close();
  });

  it.each([
    ["Flush", [message(T.Flush)]],
    ["no Flush either", []],
  ])(
    "%s and no Sync: the session ends after approvedBatchTimeoutMs, nothing commits, the lease is revoked",
    async (_, tail) => {
      const c = await RawClient.connect(g2.port);
      await c.startup();
      const held = g2.ctx.credentials.held;
      await c.write(
        Buffer.concat([
          parseMessage("", "UPDATE accounts SET owner = 'left open' WHERE id = 25"),
          bindMessage("", "", []),
          executeMessage(""),
          ...tail,
        ]),
      );
      // The approved role holds the row's lock meanwhile; then the session ends, as PostgreSQL
      // ends a session idle in a transaction too long.
      const t0 = Date.now();
      const rest = await c.closedAfter(6000);
      expect(Date.now() - t0).toBeLessThan(4000);
      expect(types(rest)).toBe("12CE");
      expect(codes(rest)).toEqual(["25P03"]);
      expect(errorOf(rest.find((m) => m.type === "E"))?.message).toMatch(/left open without Sync/);
      await expect.poll(() => g2.ctx.credentials.held, { timeout: 10_000 }).toBe(held - 1);
      expect(await owner(25)).toBe("u25");
      const lease = g2.audit.findLast((e) => e.approval)?.credential?.lease ?? "";
      expect(lease).toMatch(/^database\/creds\/writer\//);
      await expect.poll(() => leaseStatus(lease), { timeout: 10_000 }).toBe(400);
    },
  );

  it("a statement still running (waiting on a lock) is not idle: the batch goes on, then commits at Sync", async () => {
    const lock = await lockRow(30);
    const c = await RawClient.connect(g2.port);
    try {
      await c.startup();
      await c.write(
        Buffer.concat([
          parseMessage("", "UPDATE accounts SET owner = 'slow' WHERE id = 30"),
          bindMessage("", "", []),
          executeMessage(""),
          message(T.Flush),
        ]),
      );
      await approvedWaiting();
      await sleep(2500);
      expect(c.closed).toBe(false);
      await lock.release();
      expect(types(await c.until("C"))).toBe("12C");
      await c.write(syncMessage());
      expect(types(await c.until("Z"))).toBe("Z");
      expect(await owner(30)).toBe("slow");
    } finally {
      await lock.release();
      c.close();
    }
  });
});
