// Session housekeeping drivers send (asyncpg's pool reset, psycopg's named-cursor CLOSE, DISCARD
// ALL) through the guard to a real PostgreSQL under a read-only policy, with masking on.
import pg from "pg";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type GuardedPostgres, pgPolicy, startGuard } from "./support.ts";

let server: PostgresServer;
let g: GuardedPostgres;

beforeAll(async () => {
  server = await startPostgres();
  await server.sql(`
    CREATE TABLE customers (id int PRIMARY KEY, email text);
    INSERT INTO customers VALUES (1, 'ann@example.com');
    GRANT SELECT ON customers TO airlock_scram;
  `);
  g = await startGuard(
    pgPolicy(server, {
      rules: [{ name: "read", action: "allow", match: { sql: { statements: ["read", "transaction"] } } }],
      masking: [
        { name: "emails", connections: ["db"], columns: ["email"], detectors: ["email"], strategy: "redact" },
      ],
    }),
    { credential: server.users.scram },
  );
});

afterAll(async () => {
  await g?.close();
  await server?.stop();
});

it("asyncpg's pool reset passes under a read policy; the session stays read-only", async () => {
  const c = new pg.Client(g.url());
  await c.connect();
  try {
    await c.query("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;");
    await c.query("DISCARD ALL");
    await c.query("DEALLOCATE ALL");
    await c.query("RESET statement_timeout");
    const r = await c.query("SHOW default_transaction_read_only");
    expect(r.rows[0].default_transaction_read_only).toBe("on");
    // A write is still refused by the server itself after RESET ALL / DISCARD ALL.
    await expect(c.query("CREATE TEMP TABLE x AS SELECT 1")).rejects.toThrow(/Airlock denied/);
    await expect(c.query("RESET role")).rejects.toThrow(/always denied/);
    const rows = await c.query("SELECT email FROM customers");
    expect(rows.rows[0].email).not.toContain("ann@example.com");
  } finally {
    await c.end();
  }
});

it("a denial in a multi-statement Query names the statement, and the session stays usable", async () => {
  const c = new pg.Client(g.url());
  await c.connect();
  try {
    const err = await c.query("SELECT 1; CLOSE ALL; DELETE FROM customers WHERE id = 1").catch((e) => e);
    expect(err.code).toBe("42501");
    expect(err.message).toContain('statement 3 of 3 ("DELETE FROM customers WHERE id = 1")');
    expect((await c.query("SELECT 2 AS n")).rows[0].n).toBe(2);
  } finally {
    await c.end();
  }
});

it("DEALLOCATE through Parse/Bind/Execute is followed: EXECUTE of the dropped name is refused", async () => {
  const c = new pg.Client(g.url());
  await c.connect();
  try {
    await c.query("PREPARE p AS SELECT id FROM customers");
    expect((await c.query("EXECUTE p")).rows).toEqual([{ id: 1 }]);
    // node-postgres sends a query with parameters through the extended protocol.
    await c.query({ text: "DEALLOCATE p", values: [], name: "dealloc" });
    const err = await c.query("EXECUTE p").catch((e) => e);
    expect(err.code).toBe("42501");
    expect(err.message).toMatch(/p/);
  } finally {
    await c.end();
  }
});
