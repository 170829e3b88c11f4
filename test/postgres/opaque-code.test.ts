// Code the statement text does not show, through the real guard in a read-write session (the
// session is not in read-only mode because a rule allows writes with approval): a writing
// function called as a "read", through a view or a user-defined operator, is refused by the read
// rule and never runs; plain reads and safe functions pass; after this session creates a writing
// function, the guard rereads the catalog and refuses the next call of it.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { bindMessage, errorOf, executeMessage, parseMessage, RawClient, syncMessage } from "./raw-client.ts";
import { type GuardedPostgres, pgPolicy, startGuard } from "./support.ts";

let server: PostgresServer;
let g: GuardedPostgres;

beforeAll(async () => {
  server = await startPostgres();
  await server.sql(`
    CREATE TABLE orders (id int PRIMARY KEY, total numeric);
    INSERT INTO orders SELECT i, i FROM generate_series(1, 5) i;
    CREATE FUNCTION purge_orders() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; RETURN 1; END $$;
    CREATE FUNCTION purge_add(int, int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; RETURN $1 + $2; END $$;
    CREATE OPERATOR ## (LEFTARG = int, RIGHTARG = int, FUNCTION = purge_add);
    CREATE VIEW purging AS SELECT purge_orders() AS n;
    CREATE FUNCTION purge_ok(int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; RETURN true; END $$;
    CREATE DOMAIN purging_int AS int CHECK (purge_ok(VALUE));
    CREATE FUNCTION safe_total() RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT sum(total) FROM orders $$;
    CREATE FUNCTION maybe() RETURNS int LANGUAGE sql STABLE AS $$ SELECT 1 $$;
    ALTER FUNCTION maybe() OWNER TO airlock_scram;
    CREATE FUNCTION later() RETURNS int LANGUAGE sql STABLE AS $$ SELECT 1 $$;
    ALTER FUNCTION later() OWNER TO airlock_scram;
    GRANT ALL ON ALL TABLES IN SCHEMA public TO airlock_scram;
    GRANT CREATE ON SCHEMA public TO airlock_scram;
  `);
  g = await startGuard(
    pgPolicy(server, {
      rules: [
        { name: "read", action: "allow", match: { sql: { statements: ["read", "transaction"] } } },
        { name: "ddl", action: "allow", match: { sql: { statements: ["create"] } } },
        {
          name: "writes-need-dba",
          action: "requireApproval",
          match: { sql: { statements: ["write"] } },
          approval: { approvers: { groups: ["dba"] } },
        },
      ],
    }),
    { credential: server.users.scram },
  );
});

afterAll(async () => {
  await g?.close();
  await server?.stop();
});

async function client() {
  const c = new pg.Client({ host: "127.0.0.1", port: g.port, user: "agent", database: "airlock" });
  await c.connect();
  return c;
}

const count = async () => Number((await server.sql("SELECT count(*) FROM orders")).trim());

describe("code the text does not show, on the wire", () => {
  it.each([
    ["SELECT purge_orders()", "called directly"],
    ["SELECT * FROM orders WHERE purge_orders() > 0", "in WHERE"],
    ["SELECT * FROM purging", "through a view"],
    ["SELECT 2 ## 3", "through a user-defined operator"],
    ["SELECT pg_advisory_lock(1)", "a writing built-in"],
  ])("%s (%s) is refused by a read rule and never runs", async (sql) => {
    const c = await client();
    try {
      await expect(c.query(sql)).rejects.toMatchObject({
        code: "42501",
        message: expect.stringMatching(/may write or run code the statement does not show/),
      });
      // The session stays usable, and nothing was deleted.
      expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    } finally {
      await c.end();
    }
    expect(await count()).toBe(5);
  });

  it("plain reads and STABLE functions pass", async () => {
    const c = await client();
    try {
      expect((await c.query("SELECT safe_total() AS t")).rows).toEqual([{ t: "15" }]);
      expect((await c.query("SELECT count(*)::int AS n FROM orders WHERE total > 2")).rows).toEqual([
        { n: 3 },
      ]);
    } finally {
      await c.end();
    }
  });

  it("a function this session redefines to write is refused on its next call (the catalog is reread)", async () => {
    const c = await client();
    try {
      // Known to the catalog as a harmless STABLE function: allowed.
      expect((await c.query("SELECT maybe() AS m")).rows).toEqual([{ m: 1 }]);
      await c.query(
        "CREATE OR REPLACE FUNCTION maybe() RETURNS int LANGUAGE plpgsql VOLATILE AS $$ BEGIN DELETE FROM orders; RETURN 1; END $$",
      );
      await expect(c.query("SELECT maybe()")).rejects.toMatchObject({ code: "42501" });
      // Prepared through the extended protocol too.
      await expect(c.query({ name: "p", text: "SELECT maybe()" })).rejects.toMatchObject({ code: "42501" });
    } finally {
      await c.end();
    }
    expect(await count()).toBe(5);
  });

  it("inside the transaction that redefines a function (uncommitted: the catalog cannot see it), its call is refused", async () => {
    const c = await client();
    try {
      await c.query("BEGIN");
      expect((await c.query("SELECT later() AS l")).rows).toEqual([{ l: 1 }]);
      await c.query(
        "CREATE OR REPLACE FUNCTION later() RETURNS int LANGUAGE plpgsql VOLATILE AS $$ BEGIN DELETE FROM orders; RETURN 1; END $$",
      );
      await expect(c.query("SELECT later()")).rejects.toMatchObject({
        code: "42501",
        message: expect.stringMatching(/may write or run code the statement does not show/),
      });
      await c.query("ROLLBACK");
      // Once the transaction ended, the catalog is what the server has again.
      expect((await c.query("SELECT later() AS l")).rows).toEqual([{ l: 1 }]);
    } finally {
      await c.end();
    }
    expect(await count()).toBe(5);
  });

  it.each([
    ["purging_int", "a domain whose CHECK writes"],
    ["_purging_int", "an array of it"],
  ])("a Parse declaring a parameter of type %s (%s) is refused; the server never runs it", async (type) => {
    const oid = Number((await server.sql(`SELECT '${type}'::regtype::oid`)).trim());
    const agent = await RawClient.connect(g.port);
    try {
      await agent.startup();
      const value = type.startsWith("_") ? "{1}" : "1";
      await agent.write(
        Buffer.concat([
          parseMessage("", "SELECT $1", [oid]),
          bindMessage("", "", [value]),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      const msgs = await agent.until("Z");
      expect(msgs.map(errorOf).find((e) => e)).toMatchObject({
        code: "42501",
        message: expect.stringMatching(/parameter type \d+ is a domain/),
      });
      // The same statement with an int4 parameter is a plain read.
      await agent.write(
        Buffer.concat([
          parseMessage("", "SELECT $1", [23]),
          bindMessage("", "", ["1"]),
          executeMessage(""),
          syncMessage(),
        ]),
      );
      expect((await agent.until("Z")).map(errorOf).find((e) => e)).toBeUndefined();
    } finally {
      agent.close();
    }
    expect(await count()).toBe(5);
  });
});
