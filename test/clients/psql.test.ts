// psql (Debian's PostgreSQL 15 client) through the guard to a real PostgreSQL with masking on
// (columns + detectors): rows, masked values, a clean 42501 and the same session still usable.
import { execFile } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type GuardedPostgres, pgPolicy, startGuard } from "../postgres/support.ts";

let server: PostgresServer;
let g: GuardedPostgres;

beforeAll(async () => {
  server = await startPostgres();
  await server.sql(`
    CREATE TABLE customers (id int PRIMARY KEY, name text, email text, note text);
    INSERT INTO customers VALUES (1, 'Ann', 'ann@example.com', 'card 4111 1111 1111 1111');
    GRANT SELECT, DELETE ON customers TO airlock_scram;
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
          columns: ["email"],
          detectors: ["creditCard"],
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

it("psql: rows, masked values, a 42501 naming the rule, and the session goes on", async () => {
  const script = [
    "\\set VERBOSITY verbose",
    "SELECT id, name, email, note FROM customers;",
    "DELETE FROM customers WHERE id = 1;",
    "SELECT count(*) AS n FROM customers;",
  ].join("\n");
  const child = execFile("psql", [g.url(), "-X", "-At", "-v", "ON_ERROR_STOP=0"], { timeout: 30_000 });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d) => {
    out += d;
  });
  child.stderr?.on("data", (d) => {
    err += d;
  });
  child.stdin?.end(script);
  await new Promise((resolve) => child.on("close", resolve));
  const lines = out.trim().split("\n");
  expect(lines[0]).toMatch(/^1\|Ann\|[^|]+\|card /);
  expect(out).not.toContain("ann@example.com");
  expect(out).not.toContain("4111 1111 1111 1111");
  expect(err).toContain("42501");
  expect(err).toContain("Airlock denied this statement");
  expect(lines.at(-1)).toBe("1");
});
