// Session state follows the server: a Parse or PREPARE the server refuses (an earlier error in the
// pipeline, an aborted transaction, a missing table) is never recorded by the guard, so a later
// definition of the same name is judged as itself — an approved UPDATE cannot hide behind a
// stale harmless entry and run again without asking (real PostgreSQL, raw protocol messages).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApprovalGate, ApprovalInput } from "../../sidecar/src/approvals/gate.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { bindMessage, errorOf, executeMessage, parseMessage, RawClient, syncMessage } from "./raw-client.ts";
import { type GuardedPostgres, pgPolicy, startGuard } from "./support.ts";

let server: PostgresServer;
let g: GuardedPostgres;
const asked: ApprovalInput[] = [];
const gate: ApprovalGate = {
  async request(input) {
    asked.push(input);
    return { approved: true, request: `areq-${asked.length}`, approvers: ["dana"] };
  },
};

beforeAll(async () => {
  server = await startPostgres();
  await server.sql(`
    CREATE TABLE counter (n int);
    INSERT INTO counter VALUES (0);
    GRANT ALL ON counter TO airlock_scram;
  `);
  g = await startGuard(
    pgPolicy(server, {
      rules: [
        { name: "read", action: "allow", match: { sql: { statements: ["read", "transaction"] } } },
        {
          name: "updates-need-dba",
          action: "requireApproval",
          match: { sql: { statements: ["update"] } },
          approval: { approvers: { groups: ["dba"] } },
        },
      ],
    }),
    { credential: server.users.scram, approvals: gate },
  );
});

afterAll(async () => {
  await g?.close();
  await server?.stop();
});

async function session(): Promise<RawClient> {
  const c = await RawClient.connect(g.port);
  await c.startup();
  return c;
}

const counter = async () => Number((await server.sql("SELECT n FROM counter")).trim());

describe("session state follows the server", () => {
  it("a refused Parse is forgotten: the next Parse of the name is what every Bind runs and asks for", async () => {
    const c = await session();
    try {
      // The server refuses this Parse (no such table): the guard must not keep "p" = a read.
      await c.write(Buffer.concat([parseMessage("p", "SELECT * FROM no_such_table"), syncMessage()]));
      const refused = await c.until("Z");
      expect(errorOf(refused.find((m) => m.type === "E"))?.code).toBe("42P01");
      // Now "p" becomes an UPDATE, approved once for the Parse.
      await c.write(Buffer.concat([parseMessage("p", "UPDATE counter SET n = n + 1"), syncMessage()]));
      await c.until("Z");
      const before = asked.length;
      for (let i = 0; i < 3; i++) {
        await c.write(Buffer.concat([bindMessage("", "p", []), executeMessage(""), syncMessage()]));
        const r = await c.until("Z");
        expect(
          r.find((m) => m.type === "E"),
          JSON.stringify(r),
        ).toBeUndefined();
      }
      // Each execution after the first asks again (the approval covered one execution).
      expect(asked.length - before).toBeGreaterThanOrEqual(2);
      expect(await counter()).toBe(3);
      const updates = g.audit.filter(
        (e) => e.operation.kind === "sql" && e.operation.statements[0]?.kind === "update",
      );
      expect(updates).toHaveLength(3); // each execution, audited as what it runs
    } finally {
      c.close();
    }
  });

  it("a PREPARE the server refuses in an aborted transaction is not recorded (EXECUTE of it is refused)", async () => {
    const c = await session();
    try {
      await c.query("BEGIN");
      await c.query("SELECT 1/0");
      const r = await c.query("PREPARE q AS SELECT 1");
      expect(errorOf(r.find((m) => m.type === "E"))?.code).toBe("25P02");
      await c.query("ROLLBACK");
      const e = await c.query("EXECUTE q");
      expect(errorOf(e.find((m) => m.type === "E"))).toMatchObject({
        code: "42501",
        message: expect.stringMatching(/never prepared/),
      });
      // One the server accepted is recorded.
      await c.query("PREPARE q AS SELECT 41 + 1");
      const ok = await c.query("EXECUTE q");
      expect(ok.find((m) => m.type === "E")).toBeUndefined();
    } finally {
      c.close();
    }
  });

  it("the approver of an EXECUTE is shown what it runs, prepared in SQL or through Parse", async () => {
    const c = await session();
    try {
      await c.query("SELECT 1; PREPARE bump AS UPDATE counter SET n = n + 1 WHERE n < 1000");
      await c.write(Buffer.concat([parseMessage("bump2", "UPDATE counter SET n = n + 2"), syncMessage()]));
      await c.until("Z");
      for (const [exec, shown] of [
        ["EXECUTE bump", /\bUPDATE counter SET n = n \+ (\$\d+|1) WHERE n < (\$\d+|1000)/],
        ["EXECUTE bump2", /\bUPDATE counter SET n = n \+ (\$\d+|2)/],
      ] as const) {
        const before = asked.length;
        const r = await c.query(exec);
        expect(r.find((m) => m.type === "E")).toBeUndefined();
        expect(asked.length).toBe(before + 1);
        expect(asked.at(-1)?.summary).toMatch(shown);
      }
    } finally {
      c.close();
    }
  });

  it("after an earlier error in the pipeline, a Parse the server skips is not recorded", async () => {
    const c = await session();
    try {
      await c.write(
        Buffer.concat([
          parseMessage("", "SELECT 1/0"),
          bindMessage("", "", []),
          executeMessage(""),
          parseMessage("later", "SELECT 1"),
          syncMessage(),
        ]),
      );
      await c.until("Z");
      await c.write(Buffer.concat([bindMessage("", "later", []), executeMessage(""), syncMessage()]));
      const r = await c.until("Z");
      expect(errorOf(r.find((m) => m.type === "E"))).toMatchObject({
        code: "42501",
        message: expect.stringMatching(/never prepared through the sidecar/),
      });
    } finally {
      c.close();
    }
  });
});

describe("settings and transactions", () => {
  it("custom settings and two-phase commit are refused; the session stays usable", async () => {
    const c = await session();
    try {
      for (const sql of [
        "SET app.tenant = 'globex'",
        "SELECT set_config('app.tenant', 'globex', false)",
        "RESET app.tenant",
      ]) {
        const r = await c.query(sql);
        // (set_config is refused before that, as a function no rule can allow.)
        expect(errorOf(r.find((m) => m.type === "E")), sql).toMatchObject({
          code: "42501",
          message: expect.stringMatching(
            /custom settings \(app\.tenant\) are refused|set_config is always denied/,
          ),
        });
      }
      const two = await c.query("PREPARE TRANSACTION 'x'");
      expect(errorOf(two.find((m) => m.type === "E"))?.code).toBe("42501");
      const ok = await c.query("SELECT 1");
      expect(ok.find((m) => m.type === "E")).toBeUndefined();
    } finally {
      c.close();
    }
  });
});

describe("custom settings a policy lists (match.sql.settings)", () => {
  let listed: GuardedPostgres;
  beforeAll(async () => {
    // Row-level security that trusts app.tenant: the rows a session sees follow the setting.
    await server.sql(`
      CREATE TABLE tenant_orders (tenant text, id int);
      INSERT INTO tenant_orders VALUES ('acme', 1), ('globex', 2);
      ALTER TABLE tenant_orders ENABLE ROW LEVEL SECURITY;
      CREATE POLICY by_tenant ON tenant_orders USING (tenant = current_setting('app.tenant', true));
      GRANT SELECT ON tenant_orders TO airlock_scram;
    `);
    listed = await startGuard(
      pgPolicy(server, {
        rules: [
          { name: "read", action: "allow", match: { sql: { statements: ["read", "transaction"] } } },
          { name: "no-tenant-admin", action: "deny", match: { sql: { settings: ["app.tenant_admin"] } } },
          {
            name: "choose-tenant",
            action: "allow",
            match: { sql: { statements: ["set"], settings: ["app.*"] } },
          },
        ],
      }),
      { credential: server.users.scram },
    );
  });
  afterAll(async () => listed?.close());

  it("a listed setting may be changed and row-level security follows it; others stay refused", async () => {
    const c = await RawClient.connect(listed.port);
    await c.startup();
    const rows = async () =>
      (await c.query("SELECT id FROM tenant_orders ORDER BY id")).filter((m) => m.type === "D").length;
    try {
      expect(await rows()).toBe(0);
      const set = await c.query("SET app.tenant = 'acme'");
      expect(set.find((m) => m.type === "E")).toBeUndefined();
      expect(await rows()).toBe(1);
      for (const [sql, why] of [
        // A deny rule naming the setting wins over the allow glob.
        ["SET app.tenant_admin = 'on'", /denied by rule no-tenant-admin/],
        // Not under app.*: the default deny says why.
        [
          "SET other.tenant = 'globex'",
          /custom settings \(other\.tenant\) are refused unless a rule lists them/,
        ],
        // The read rule does not list settings: a read that changes one is refused.
        ["SELECT id, set_config('app.tenant', 'globex', false) FROM tenant_orders", /always denied|refused/],
      ] as const) {
        const r = await c.query(sql);
        expect(errorOf(r.find((m) => m.type === "E")), sql).toMatchObject({
          code: "42501",
          message: expect.stringMatching(why),
        });
      }
      expect(await rows()).toBe(1);
    } finally {
      c.close();
    }
  });
});
