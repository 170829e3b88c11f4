// Real clients through the PostgreSQL guard to a real PostgreSQL: psql (spawned), node-postgres
// (simple, extended, prepared, pipelined), COPY both ways, transactions, notices and
// notifications, cancel, credential injection with SCRAM / MD5 / cleartext upstream auth, TLS to
// the upstream, end-user tokens, approvals, audit and metrics.
import { execFile } from "node:child_process";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createOidcVerifier } from "../../sidecar/src/identity/index.ts";
import type { ApprovalGate, ApprovalInput } from "../../sidecar/src/protocols/postgres/index.ts";
import { cancelRequest } from "../../sidecar/src/protocols/postgres/protocol.ts";
import { makeKey, signToken, TestIdp } from "../fixtures/oidc-provider.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import {
  bindMessage,
  errorOf,
  executeMessage,
  type Msg,
  parseMessage,
  queryMessage,
  RawClient,
  rowValues,
  sleep,
  syncMessage,
} from "./raw-client.ts";
import { type GuardedPostgres, type PolicyOptions, pgPolicy, startGuard } from "./support.ts";

let server: PostgresServer;
const guards: GuardedPostgres[] = [];

beforeAll(async () => {
  server = await startPostgres();
  await server.sql(`
    CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric);
    INSERT INTO orders SELECT g, 'c' || g, g * 10 FROM generate_series(1, 20) g;
    CREATE TABLE sink (a int, b text);
    CREATE DATABASE other;
    GRANT ALL ON orders, sink TO airlock_scram, airlock_md5, airlock_password;
  `);
});

afterAll(async () => {
  for (const g of guards) await g.close();
  await server?.stop();
});

async function guard(opts: PolicyOptions = {}, extra: Parameters<typeof startGuard>[1] = {}) {
  const g = await startGuard(pgPolicy(server, opts), { credential: server.users.scram, ...extra });
  guards.push(g);
  return g;
}

const READ_WRITE: PolicyOptions = {
  rules: [
    { name: "no-delete", action: "deny", match: { sql: { statements: ["delete"] } } },
    {
      name: "rw",
      action: "allow",
      match: {
        sql: {
          statements: [
            "read",
            "insert",
            "update",
            "copyFrom",
            "transaction",
            "set",
            "other",
            "drop",
            "create",
          ],
        },
      },
    },
  ],
};

function psql(
  url: string,
  args: string[],
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      "psql",
      ["-X", "-q", "-A", "-t", url, ...args],
      { timeout: 30_000, env: { ...process.env, PGPASSWORD: "", PGCONNECT_TIMEOUT: "10" } },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

async function client(g: GuardedPostgres, config: pg.ClientConfig = {}) {
  const c = new pg.Client({ host: "127.0.0.1", port: g.port, user: "agent", database: "airlock", ...config });
  await c.connect();
  return c;
}

describe("psql", () => {
  it("runs queries with the sidecar's credential (the agent sends none)", async () => {
    const g = await guard(READ_WRITE);
    const r = await psql(g.url(), ["-c", "SELECT current_user, count(*) FROM orders"]);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("airlock_scram|20");
  });

  it("COPY in both directions with \\copy", async () => {
    const g = await guard(READ_WRITE);
    const out = await psql(g.url(), [
      "-c",
      "\\copy (SELECT id, customer FROM orders WHERE id <= 3 ORDER BY id) TO STDOUT",
    ]);
    expect(out.stdout).toBe("1\tc1\n2\tc2\n3\tc3\n");
    const inp = await psql(g.url(), ["-c", "\\copy sink FROM STDIN"], "1\tx\n2\ty\n\\.\n");
    expect(inp.stderr).toBe("");
    expect(await server.sql("SELECT count(*) FROM sink")).toBe("2");
    await server.sql("TRUNCATE sink");
  });

  it("a script with a denied statement reports it and carries on", async () => {
    const g = await guard(READ_WRITE);
    const r = await psql(g.url(), [
      "-c",
      "SELECT 1",
      "-c",
      "DELETE FROM orders",
      "-c",
      "SELECT count(*) FROM orders",
    ]);
    expect(r.stdout.trim().split("\n")).toEqual(["1", "20"]);
    expect(r.stderr).toMatch(
      /ERROR: {2}Airlock denied this statement: denied by rule no-delete \[policy agents\/pg-test, rule no-delete\]/,
    );
  });
});

describe("node-postgres", () => {
  it("simple and extended queries, named prepared statements", async () => {
    const g = await guard(READ_WRITE);
    const c = await client(g);
    try {
      expect((await c.query("SELECT count(*)::int AS n FROM orders")).rows).toEqual([{ n: 20 }]);
      expect((await c.query("SELECT total FROM orders WHERE id = $1", [3])).rows).toEqual([{ total: "30" }]);
      for (let i = 1; i <= 5; i++) {
        const r = await c.query({
          name: "by-id",
          text: "SELECT customer FROM orders WHERE id = $1",
          values: [i],
        });
        expect(r.rows).toEqual([{ customer: `c${i}` }]);
      }
      const ins = await c.query("INSERT INTO sink VALUES ($1, $2), ($3, $4)", [1, "a", 2, "b"]);
      expect(ins.rowCount).toBe(2);
      await c.query("DELETE FROM sink").catch(() => {});
    } finally {
      await c.end();
    }
    await server.sql("TRUNCATE sink");
  });

  it("pipelined queries, with a denial in the middle, each answered in order", async () => {
    const g = await guard(READ_WRITE);
    const c = await client(g);
    try {
      const results = await Promise.allSettled([
        c.query("SELECT 1 AS a"),
        c.query("SELECT $1::int AS b", [2]),
        c.query("DELETE FROM orders WHERE id = $1", [1]),
        c.query({ name: "p3", text: "SELECT $1::int AS c", values: [3] }),
        c.query("SELECT count(*)::int AS n FROM orders"),
      ]);
      expect(
        results.map((r) =>
          r.status === "fulfilled" ? r.value.rows[0] : (r.reason as { code: string }).code,
        ),
      ).toEqual([{ a: 1 }, { b: 2 }, "42501", { c: 3 }, { n: 20 }]);
    } finally {
      await c.end();
    }
  });

  it("true wire pipelining: several Sync groups and a Query in one write, a denial in the middle", async () => {
    const g = await guard(READ_WRITE);
    const c = await RawClient.connect(g.port);
    try {
      await c.startup();
      const group = (sql: string, params: string[] = []) => [
        parseMessage("", sql),
        bindMessage("", "", params),
        executeMessage(""),
        syncMessage(),
      ];
      await c.write(
        Buffer.concat([
          ...group("SELECT customer FROM orders WHERE id = $1", ["1"]),
          ...group("DELETE FROM orders WHERE id = $1", ["2"]),
          queryMessage("SELECT 'simple'"),
          ...group("SELECT customer FROM orders WHERE id = $1", ["3"]),
        ]),
      );
      const seen: string[] = [];
      const rows: (string | null)[][] = [];
      for (let z = 0; z < 4; z++) {
        for (const m of await c.until("Z")) {
          seen.push(m.type);
          if (m.type === "D") rows.push(rowValues(m));
          if (m.type === "E") expect(errorOf(m)?.code).toBe("42501");
        }
        seen.push("|");
      }
      expect(seen.join("")).toBe("12DCZ|EZ|TDCZ|12DCZ|");
      expect(rows).toEqual([["c1"], ["simple"], ["c3"]]);
    } finally {
      c.close();
    }
    expect(await server.sql("SELECT count(*) FROM orders")).toBe("20");
  });

  it("a denial inside a transaction aborts it, like any error", async () => {
    const g = await guard(READ_WRITE);
    const c = await client(g);
    try {
      await c.query("BEGIN");
      await c.query("INSERT INTO sink VALUES (100, 'tx')");
      await expect(c.query("DELETE FROM sink")).rejects.toMatchObject({ code: "42501" });
      await expect(c.query("SELECT 1")).rejects.toMatchObject({ code: "25P02" });
      await c.query("COMMIT"); // turns into ROLLBACK
      expect((await c.query("SELECT count(*)::int AS n FROM sink WHERE a = 100")).rows).toEqual([{ n: 0 }]);
      // Extended protocol: same semantics.
      await c.query("BEGIN");
      await c.query("INSERT INTO sink VALUES ($1, 'tx')", [101]);
      await expect(c.query("DELETE FROM sink WHERE a = $1", [101])).rejects.toMatchObject({ code: "42501" });
      await c.query("ROLLBACK");
      expect((await c.query("SELECT count(*)::int AS n FROM sink")).rows).toEqual([{ n: 0 }]);
    } finally {
      await c.end();
    }
  });

  it("server errors pass through and the session stays usable", async () => {
    const g = await guard(READ_WRITE);
    const c = await client(g);
    try {
      await expect(c.query("SELECT 1/0")).rejects.toMatchObject({ code: "22012" });
      await expect(c.query("SELECT $1::int / 0", [1])).rejects.toMatchObject({ code: "22012" });
      await expect(c.query("SELECT * FROM no_such_table")).rejects.toMatchObject({ code: "42P01" });
      expect((await c.query("SELECT 2 AS x")).rows).toEqual([{ x: 2 }]);
    } finally {
      await c.end();
    }
  });

  it("notices and notifications pass through", async () => {
    const g = await guard(READ_WRITE);
    const c = await client(g);
    const direct = new pg.Client({
      host: "127.0.0.1",
      port: server.port,
      database: "airlock",
      ...server.users.scram,
    });
    await direct.connect();
    try {
      const notices: string[] = [];
      c.on("notice", (n) => notices.push(n.message ?? ""));
      await c.query("DROP TABLE IF EXISTS no_such_table");
      expect(notices.join()).toMatch(/does not exist, skipping/);
      const got = new Promise<string>((resolve) => c.on("notification", (n) => resolve(n.payload ?? "")));
      await c.query("LISTEN airlock_channel");
      await direct.query("NOTIFY airlock_channel, 'hello'");
      expect(await got).toBe("hello");
    } finally {
      await c.end();
      await direct.end();
    }
  });
});

describe("credential injection and upstream authentication", () => {
  it.each(["scram", "md5", "password"] as const)(
    "%s: the upstream sees the policy's user",
    async (method) => {
      const g = await guard(READ_WRITE, { credential: server.users[method] });
      const c = await client(g, { user: "whoever-the-agent-claims" });
      try {
        const r = await c.query("SELECT current_user AS u, session_user AS s");
        expect(r.rows).toEqual([{ u: server.users[method].user, s: server.users[method].user }]);
      } finally {
        await c.end();
      }
    },
  );

  it("a wrong credential fails without revealing it", async () => {
    const g = await guard(READ_WRITE, { credential: { user: "airlock_scram", password: "wrong" } });
    const c = new pg.Client({ host: "127.0.0.1", port: g.port, user: "agent", database: "airlock" });
    const err = await c.connect().then(
      () => undefined,
      (e: unknown) => e as { code?: string; message: string },
    );
    expect(err?.code).toBe("08006");
    expect(err?.message).toMatch(/could not authenticate to the upstream/);
    expect(err?.message).not.toMatch(/airlock_scram|wrong/);
    await c.end().catch(() => {});
  });

  it("the policy's database wins over the agent's", async () => {
    const g = await guard({ ...READ_WRITE, database: "other" });
    const c = await client(g, { database: "airlock" });
    try {
      expect((await c.query("SELECT current_database() AS d")).rows).toEqual([{ d: "other" }]);
    } finally {
      await c.end();
    }
  });

  it("startup options from the agent are dropped; read-only mode is set for read-only rules", async () => {
    const ro = await guard({
      rules: [{ name: "read", action: "allow", match: { sql: { statements: ["read", "set"] } } }],
    });
    const c = await client(ro, { options: "-c search_path=evil -c default_transaction_read_only=off" });
    try {
      const r = await c.query(
        "SELECT current_setting('search_path') AS sp, current_setting('default_transaction_read_only') AS ro, current_setting('client_encoding') AS enc, current_setting('application_name') AS app",
      );
      expect(r.rows).toEqual([{ sp: '"$user", public', ro: "on", enc: "UTF8", app: "airlock" }]);
    } finally {
      await c.end();
    }
    const rw = await guard(READ_WRITE);
    const d = await client(rw, { application_name: "agent-app" });
    try {
      const r = await d.query(
        "SELECT current_setting('default_transaction_read_only') AS ro, current_setting('application_name') AS app",
      );
      expect(r.rows).toEqual([{ ro: "off", app: "agent-app" }]);
    } finally {
      await d.end();
    }
  });
});

describe("cancel", () => {
  it("the agent's CancelRequest (with the sidecar's key) cancels the upstream statement", async () => {
    const g = await guard(READ_WRITE);
    const locker = new pg.Client({
      host: "127.0.0.1",
      port: server.port,
      database: "airlock",
      ...server.users.scram,
    });
    await locker.connect();
    await locker.query("BEGIN; LOCK TABLE sink IN ACCESS EXCLUSIVE MODE");
    const c = await RawClient.connect(g.port);
    try {
      const startup = await c.startup();
      const key = startup.find((m) => m.type === "K");
      if (!key) throw new Error("no BackendKeyData");
      const pid = key.payload.readInt32BE(0);
      const secret = key.payload.readInt32BE(4);
      await c.write(queryMessage("SELECT count(*) FROM sink"));
      await sleep(300); // the statement is now waiting for the lock
      const canceller = await RawClient.connect(g.port);
      await canceller.write(cancelRequest(pid, secret));
      const msgs = await c.until("Z", 10_000);
      expect(errorOf(msgs.find((m) => m.type === "E"))?.code).toBe("57014");
      canceller.close();
      // The session stays usable after the cancel.
      await c.write(queryMessage("SELECT 1"));
      expect((await c.until("Z")).some((m) => m.type === "D")).toBe(true);
    } finally {
      c.close();
      await locker.query("ROLLBACK");
      await locker.end();
    }
  });
});

describe("TLS to the upstream", () => {
  let tlsServer: PostgresServer;
  beforeAll(async () => {
    tlsServer = await startPostgres({ tls: true });
  });
  afterAll(async () => {
    await tlsServer?.stop();
  });

  async function tlsGuard(tls: NonNullable<PolicyOptions["tls"]>, host?: string) {
    const g = await startGuard(pgPolicy(tlsServer, { tls, ...(host ? { host } : {}) }), {
      credential: tlsServer.users.scram,
    });
    guards.push(g);
    await g.setSecret("pg-ca", "ca.crt", tlsServer.caPem ?? "");
    return g;
  }

  const sslQuery = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

  it.each([
    [
      "verify-full by IP SAN",
      { mode: "verify-full", caSecretRef: { name: "pg-ca", key: "ca.crt" } },
      undefined,
    ],
    [
      "verify-full by host name",
      { mode: "verify-full", caSecretRef: { name: "pg-ca", key: "ca.crt" } },
      "localhost",
    ],
    [
      "verify-ca with another name",
      { mode: "verify-ca", caSecretRef: { name: "pg-ca", key: "ca.crt" }, serverName: "db.example" },
      undefined,
    ],
  ] as const)("%s", async (_name, tls, host) => {
    const g = await tlsGuard(tls, host);
    const r = await psql(g.url(), ["-c", sslQuery]);
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("t");
  });

  it.each([
    [
      "verify-full with a name the certificate does not carry",
      { mode: "verify-full", caSecretRef: { name: "pg-ca", key: "ca.crt" }, serverName: "db.example" },
    ],
    ["verify-full against the system roots", { mode: "verify-full" }],
  ] as const)("refused: %s", async (_name, tls) => {
    const g = await tlsGuard(tls);
    const r = await psql(g.url(), ["-c", sslQuery]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/TLS to the upstream failed/);
  });

  it("a server without TLS is refused when the policy requires it", async () => {
    const g = await startGuard(pgPolicy(server, { tls: { mode: "verify-full" } }), {
      credential: server.users.scram,
    });
    guards.push(g);
    const r = await psql(g.url(), ["-c", "SELECT 1"]);
    expect(r.stderr).toMatch(/does not accept TLS/);
  });
});

describe("end-user identity tokens", () => {
  it("the password carries the user's OIDC token; rules see the user", async () => {
    const key = await makeKey("ES256", "k1");
    const idp = await TestIdp.start([key]);
    try {
      const verifier = createOidcVerifier({ issuer: idp.url, audiences: ["airlock"], jwksUri: idp.jwksUri });
      const g = await guard(
        {
          identity: { requireUserToken: true, oidc: { issuer: idp.url, audiences: ["airlock"] } },
          rules: [
            {
              name: "alice-reads",
              action: "allow",
              subjects: { users: ["alice"] },
              match: { sql: { statements: ["read"] } },
            },
          ],
        },
        { verifier },
      );
      const now = Math.floor(Date.now() / 1000);
      const token = (sub: string) =>
        signToken(key, { iss: idp.url, aud: "airlock", sub, iat: now, exp: now + 300 });
      const alice = await client(g, { password: await token("alice") });
      try {
        expect((await alice.query("SELECT count(*)::int AS n FROM orders")).rows).toEqual([{ n: 20 }]);
      } finally {
        await alice.end();
      }
      expect(g.audit.at(-1)?.identity.user).toBe("alice");
      const bob = await client(g, { password: await token("bob") });
      try {
        await expect(bob.query("SELECT 1")).rejects.toMatchObject({ code: "42501" });
      } finally {
        await bob.end();
      }
      const forged = new pg.Client({
        host: "127.0.0.1",
        port: g.port,
        user: "agent",
        database: "airlock",
        password: "not-a-token",
      });
      await expect(forged.connect()).rejects.toMatchObject({ code: "28P01" });
      await forged.end().catch(() => {});
    } finally {
      await idp.stop();
    }
  });
});

describe("approvals", () => {
  const rules: PolicyOptions["rules"] = [
    {
      name: "delete-needs-dba",
      action: "requireApproval",
      match: { sql: { statements: ["delete"] } },
      approval: { approvers: { groups: ["dba"] } },
    },
    { name: "rw", action: "allow", match: { sql: { statements: ["read", "insert", "transaction"] } } },
  ];

  it("without an approval service the statement is denied with a clear message", async () => {
    const g = await guard({ rules });
    const c = await client(g);
    try {
      await expect(c.query("DELETE FROM sink")).rejects.toMatchObject({
        code: "42501",
        message: expect.stringMatching(/approval required but no approval service is configured/),
      });
    } finally {
      await c.end();
    }
  });

  it("the statement waits on the gate and runs once approved (stub gate: the approvals service is another issue)", async () => {
    const asked: ApprovalInput[] = [];
    const gate: ApprovalGate = {
      async request(input) {
        asked.push(input);
        await sleep(50);
        const approved =
          input.operation.kind === "sql" &&
          input.operation.statements.every((s) => s.tables.includes("sink"));
        return approved
          ? { approved, request: "areq-1", approvers: ["dana"] }
          : { approved, request: "areq-2", status: "denied", message: "dana said no" };
      },
    };
    const g = await guard({ rules }, { approvals: gate });
    const c = await client(g);
    try {
      await c.query("INSERT INTO sink VALUES (7, 'x'), (8, 'y')");
      expect((await c.query("-- cleaning up test rows\nDELETE FROM sink WHERE a = $1", [7])).rowCount).toBe(
        1,
      );
      // A named statement approved once asks again for its next execution.
      const del = { name: "del", text: "DELETE FROM sink WHERE a = $1" };
      expect((await c.query({ ...del, values: [8] })).rowCount).toBe(1);
      expect((await c.query({ ...del, values: [9] })).rowCount).toBe(0);
      await expect(c.query("DELETE FROM orders WHERE id = 999")).rejects.toMatchObject({
        code: "42501",
        message: expect.stringMatching(/dana said no/),
      });
    } finally {
      await c.end();
    }
    expect(asked[0]).toMatchObject({
      summary: "-- cleaning up test rows\nDELETE FROM sink WHERE a = $1",
      reason: "cleaning up test rows",
      fingerprint: expect.any(String),
    });
    expect(asked[2]?.summary).toBe("DELETE FROM sink WHERE a = $1"); // the re-approval of a bound statement
    expect(asked[3]?.summary).toBe("DELETE FROM orders WHERE id = $1");
    expect(asked.map((a) => [a.protocol, a.decision.rule])).toEqual(
      Array.from({ length: 4 }, () => ["postgres", "delete-needs-dba"]),
    );
    const approved = g.audit.find((e) => e.approval?.request === "areq-1");
    // As for HTTP and SSH: the decision is the rule's requireApproval; `approval` says who let it through.
    expect(approved).toMatchObject({
      decision: { action: "requireApproval", rule: "delete-needs-dba" },
      approval: { approvers: ["dana"] },
      upstream: { status: expect.stringMatching(/^DELETE /) },
    });
  });
});

describe("audit and metrics", () => {
  it("one event per statement, with shapes but no literals", async () => {
    const g = await guard(READ_WRITE);
    const c = await client(g);
    try {
      await c.query("SELECT * FROM orders WHERE customer = 'very-secret-literal'");
      await c.query("SELECT total FROM orders WHERE id = $1", [4]);
      await c.query("SELECT * FROM orders WHERE id <= 3");
      await c.query("DELETE FROM orders WHERE customer = 'another-secret'").catch(() => {});
    } finally {
      await c.end();
    }
    const [a, b, rows3, denied] = g.audit.slice(-4);
    expect(a).toMatchObject({
      protocol: "postgres",
      connection: "db",
      identity: { serviceAccount: "system:serviceaccount:agents:agent" },
      operation: {
        kind: "sql",
        statements: [{ kind: "select", tables: ["orders"], fingerprint: expect.any(String) }],
      },
      decision: { action: "allow", rule: "rw" },
      upstream: { status: "SELECT 0" },
    });
    expect(b).toMatchObject({ decision: { action: "allow" }, upstream: { status: "SELECT 1" } });
    expect(rows3).toMatchObject({ rows: 3 });
    expect(denied).toMatchObject({ decision: { action: "deny", rule: "no-delete" } });
    expect(JSON.stringify(g.audit)).not.toMatch(/secret-literal|another-secret/);
    const ops = await g.metrics.registry.getSingleMetricAsString("airlock_operations_total");
    expect(ops).toMatch(/airlock_operations_total\{connection="db",protocol="postgres",decision="deny"\} 1/);
  });
});

describe("large results", () => {
  it("every row reaches the agent in order and is counted, simple and extended, suspended portals too", async () => {
    const g = await guard(READ_WRITE);
    const c = await RawClient.connect(g.port);
    try {
      await c.startup();
      const sql = "SELECT g, repeat('x', g % 97) AS pad FROM generate_series(1, 5000) g";
      const expectRows = (msgs: Msg[], from: number, to: number) => {
        const rows = msgs.filter((m) => m.type === "D").map((m) => rowValues(m)[0]);
        expect(rows).toEqual(Array.from({ length: to - from + 1 }, (_, i) => String(from + i)));
      };
      await c.write(queryMessage(sql));
      expectRows(await c.until("Z"), 1, 5000);
      await c.write(
        Buffer.concat([
          parseMessage("", sql),
          bindMessage("", "", []),
          executeMessage("", 2000),
          executeMessage("", 0),
          syncMessage(),
        ]),
      );
      const msgs = await c.until("Z");
      expect(msgs.filter((m) => m.type !== "D").map((m) => m.type)).toEqual(["1", "2", "s", "C", "Z"]);
      expectRows(msgs, 1, 5000);
    } finally {
      c.close();
    }
    const [simple, suspended, rest] = g.audit.slice(-3);
    expect(simple).toMatchObject({ upstream: { status: "SELECT 5000" }, rows: 5000 });
    expect(suspended).toMatchObject({ upstream: { status: "suspended" }, rows: 2000 });
    expect(rest).toMatchObject({ upstream: { status: "SELECT 3000" }, rows: 3000 });
  });
});

describe("policy changes and drain", () => {
  it("a reload applies to the next statement, and to prepared statements at their next Bind", async () => {
    const g = await guard(READ_WRITE);
    const c = await client(g);
    try {
      const named = { name: "count-orders", text: "SELECT count(*)::int AS n FROM orders" };
      expect((await c.query(named)).rows).toEqual([{ n: 20 }]);
      const stricter = pgPolicy(server, {
        rules: [
          { name: "only-sink", action: "allow", match: { sql: { statements: ["read"], tables: ["sink"] } } },
        ],
      });
      expect(g.policies.update([stricter]).accepted).toBe(true);
      await expect(c.query("SELECT count(*) FROM orders")).rejects.toMatchObject({ code: "42501" });
      await expect(c.query(named)).rejects.toMatchObject({ code: "42501" });
      expect((await c.query("SELECT count(*)::int AS n FROM sink")).rows).toEqual([{ n: 0 }]);
    } finally {
      await c.end();
    }
  });

  it("a statement text judged before a reload is judged again after it", async () => {
    // The guard keeps judgements per classification for one policy generation only.
    const g = await guard(READ_WRITE);
    const c = await client(g);
    try {
      for (let i = 0; i < 2; i++)
        expect((await c.query("SELECT count(*)::int AS n FROM orders WHERE id > 0")).rows).toEqual([
          { n: 20 },
        ]);
      // Same numeric shape, other literal: judged like the text above.
      expect((await c.query("SELECT count(*)::int AS n FROM orders WHERE id > 10")).rows).toEqual([
        { n: 10 },
      ]);
      const stricter = pgPolicy(server, {
        rules: [
          { name: "only-sink", action: "allow", match: { sql: { statements: ["read"], tables: ["sink"] } } },
        ],
      });
      expect(g.policies.update([stricter]).accepted).toBe(true);
      await expect(c.query("SELECT count(*)::int AS n FROM orders WHERE id > 0")).rejects.toMatchObject({
        code: "42501",
      });
      await expect(c.query("SELECT count(*)::int AS n FROM orders WHERE id > 5")).rejects.toMatchObject({
        code: "42501",
      });
      expect(g.policies.update([pgPolicy(server, READ_WRITE)]).accepted).toBe(true);
      expect((await c.query("SELECT count(*)::int AS n FROM orders WHERE id > 0")).rows).toEqual([{ n: 20 }]);
    } finally {
      await c.end();
    }
  });

  it("EXECUTE is judged against the session's prepared statements every time", async () => {
    const g = await guard(READ_WRITE);
    const c = await client(g);
    try {
      await c.query("PREPARE cnt AS SELECT count(*)::int AS n FROM orders");
      for (let i = 0; i < 2; i++) expect((await c.query("EXECUTE cnt")).rows).toEqual([{ n: 20 }]);
      await c.query("DEALLOCATE cnt");
      // Refused by the guard (it saw the DEALLOCATE), not merely failing upstream.
      await expect(c.query("EXECUTE cnt")).rejects.toMatchObject({ code: "42501" });
      await expect(c.query("PREPARE cnt AS DELETE FROM orders WHERE id = 1")).rejects.toMatchObject({
        code: "42501",
      });
      await expect(c.query("EXECUTE cnt")).rejects.toMatchObject({ code: "42501" });
    } finally {
      await c.end();
    }
  });

  it("a named statement cannot be redefined behind the guard's back", async () => {
    const g = await guard(READ_WRITE);
    const c = await RawClient.connect(g.port);
    try {
      await c.startup();
      await c.write(Buffer.concat([parseMessage("s", "SELECT 1 AS one"), syncMessage()]));
      await c.until("Z");
      // PostgreSQL refuses the second Parse; the guard keeps judging the statement that stays.
      await c.write(
        Buffer.concat([parseMessage("s", "SELECT customer FROM orders WHERE id = 1"), syncMessage()]),
      );
      expect(errorOf((await c.until("Z"))[0])?.code).toBe("42P05");
      await c.write(Buffer.concat([bindMessage("", "s", []), executeMessage(""), syncMessage()]));
      const msgs = await c.until("Z");
      const row = msgs.find((m) => m.type === "D");
      expect(row && rowValues(row)).toEqual(["1"]);
    } finally {
      c.close();
    }
  });

  it("drain waits for statements in flight and refuses new sessions", async () => {
    const g = await guard(READ_WRITE);
    const locker = new pg.Client({
      host: "127.0.0.1",
      port: server.port,
      database: "airlock",
      ...server.users.scram,
    });
    await locker.connect();
    await locker.query("BEGIN; LOCK TABLE sink IN ACCESS EXCLUSIVE MODE");
    const c = await client(g);
    // Once its statement is answered, the drain ends the idle session with 57P01.
    const ended = new Promise<string | undefined>((resolve) =>
      c.on("error", (e: Error & { code?: string }) => resolve(e.code)),
    );
    try {
      const slow = c.query("SELECT count(*)::int AS n FROM sink");
      await sleep(200);
      let drained = false;
      const drain = g.handler.drain().then(() => {
        drained = true;
      });
      await sleep(200);
      expect(drained).toBe(false);
      const late = new pg.Client({ host: "127.0.0.1", port: g.port, user: "agent", database: "airlock" });
      await expect(late.connect()).rejects.toMatchObject({ code: "57P03" });
      await late.end().catch(() => {});
      await locker.query("ROLLBACK");
      expect((await slow).rows).toEqual([{ n: 0 }]);
      await drain;
      expect(drained).toBe(true);
      expect(await ended).toBe("57P01");
    } finally {
      await c.end().catch(() => {});
      await locker.end();
    }
  });
});
