// pg_dump (Debian's PostgreSQL 15 client) through the guard under a read policy with masking on:
// its setup (set_config('search_path', '', false), SET row_security = off, the other SETs) and
// LOCK TABLE ... IN ACCESS SHARE MODE pass; the schema dump is identical to a direct one.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type GuardedPostgres, pgPolicy, startGuard } from "./support.ts";

const run = promisify(execFile);
let server: PostgresServer;
let g: GuardedPostgres;

beforeAll(async () => {
  server = await startPostgres();
  await server.sql(`
    CREATE TABLE customers (id int PRIMARY KEY, name text, email text, card_number text);
    INSERT INTO customers VALUES (1, 'Ann', 'ann@example.com', '4111111111111111');
    CREATE VIEW emails AS SELECT id, email FROM customers;
    CREATE SEQUENCE s;
    CREATE INDEX ON customers (email);
    ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
    CREATE POLICY mine ON customers USING (true);
    GRANT SELECT ON customers, emails, s TO airlock_scram;
  `);
  g = await startGuard(
    pgPolicy(server, {
      rules: [
        { name: "read", action: "allow", match: { sql: { statements: ["read", "transaction", "set"] } } },
      ],
      masking: [
        {
          name: "pii",
          connections: ["db"],
          columns: ["email", "card_number"],
          detectors: ["email", "creditCard"],
          strategy: "redact",
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

// pg_dump 15.14+ brackets the dump with `\restrict KEY` / `\unrestrict KEY`, a random key per run.
const unkeyed = (s: string) => s.replace(/^\\(un)?restrict \S+$/gm, "\\$1restrict KEY");

const dump = async (port: number, password?: string) =>
  (
    await run(
      "pg_dump",
      [
        "--schema-only",
        "-h",
        "127.0.0.1",
        "-p",
        String(port),
        "-U",
        server.users.scram.user,
        "-d",
        "airlock",
      ],
      { env: { ...process.env, PGPASSWORD: password ?? "", PGSSLMODE: "disable" }, timeout: 30_000 },
    )
  ).stdout;

it("set_config and guarded settings stay refused beyond what only makes a session stricter", async () => {
  const pg = await import("pg");
  const c = new pg.default.Client(g.url());
  await c.connect();
  try {
    for (const sql of [
      "SET search_path = evil",
      "SELECT set_config('search_path', 'evil', false)",
      "SELECT set_config('app.tenant', 'globex', false)",
      "SET row_security = on",
      "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'search_path'",
      "LOCK TABLE customers IN ACCESS EXCLUSIVE MODE",
    ]) {
      const err = await c.query(sql).catch((e) => e);
      expect({ sql, code: err?.code }).toEqual({ sql, code: "42501" });
    }
    await c.query("SET row_security = off");
    await c.query("SELECT pg_catalog.set_config('search_path', '', false)");
    await c.query("BEGIN; LOCK TABLE public.customers IN ACCESS SHARE MODE; COMMIT");
    // row_security = off: PostgreSQL raises rather than filter (stricter, not looser).
    const rls = await c.query("SELECT email FROM public.customers").catch((e) => e);
    expect(rls.message).toMatch(/row-level security/);
    expect((await c.query("SELECT 1 AS n")).rows[0].n).toBe(1);
  } finally {
    await c.end();
  }
});

it("pg_dump --schema-only through the guard equals a direct dump", async () => {
  const direct = await dump(server.port, server.users.scram.password);
  const from = g.audit.length;
  const guarded = await dump(g.port);
  expect(direct).toContain("CREATE TABLE public.customers");
  expect(direct).toContain("CREATE POLICY mine");
  expect(unkeyed(guarded)).toBe(unkeyed(direct));
  const events = g.audit.slice(from);
  const kinds = events.flatMap((e) =>
    e.operation.kind === "sql" ? e.operation.statements.map((s) => s.kind) : [],
  );
  expect(kinds).toContain("set");
  expect(events.filter((e) => e.decision.action !== "allow")).toEqual([]);
});
