// psql (Debian's PostgreSQL 15 client) through the guard to a real PostgreSQL with masking on
// (columns + detectors): rows, masked values, a clean 42501 and the same session still usable.
import { execFile } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { ApprovalGate } from "../../sidecar/src/protocols/postgres/index.ts";
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

/** psql's output for `command`, through `url` (the guard's or the server's own). */
function psql(url: string, command: string): Promise<{ out: string; err: string }> {
  return new Promise((resolve) =>
    execFile("psql", [url, "-X", "-c", command], { timeout: 30_000 }, (_e, out, err) =>
      resolve({ out, err }),
    ),
  );
}

it.each([
  "\\d+ customers",
  "\\d customers",
  "\\dt+",
  "\\df",
  "\\dv",
  "\\l",
  "\\dn+",
  "\\du",
  "SELECT count(*), max(email), min(id) FROM customers",
  "SELECT * FROM generate_series(1, 3) AS g",
])(
  "psql %s through the guard is what a direct connection shows (catalog and neighbours untouched)",
  async (command) => {
    const { user, password } = server.users.scram;
    const direct = await psql(
      `postgresql://${user}:${encodeURIComponent(password)}@127.0.0.1:${server.port}/${server.database}?sslmode=disable`,
      command,
    );
    const guarded = await psql(g.url(), command);
    expect(guarded.err).toBe(direct.err);
    if (command.includes("max(email)")) {
      // The aggregate of the covered column is masked; its neighbours are not.
      expect(guarded.out).not.toContain("ann@example.com");
      expect(guarded.out).toMatch(/^\s+1 \| .+ \|\s+1$/m);
    } else expect(guarded.out).toBe(direct.out);
  },
);

it("psql: a statement that needs approval shows the wait notice at once, then completes when approved", async () => {
  const gate: ApprovalGate = {
    async request(input) {
      input.onWaiting?.({
        request: "areq-psql",
        approveHint: "kubectl airlock approve areq-psql -n agents",
        expiresAt: new Date(Date.now() + 60_000).toISOString(),
      });
      await new Promise((r) => setTimeout(r, 300));
      return { approved: true, request: "areq-psql", approvers: ["dana"] };
    },
  };
  const approving = await startGuard(
    pgPolicy(server, {
      rules: [
        { name: "read", action: "allow", match: { sql: { statements: ["read", "transaction"] } } },
        {
          name: "deletes-need-dba",
          action: "requireApproval",
          match: { sql: { statements: ["delete"] } },
          approval: { approvers: { groups: ["dba"] } },
        },
      ],
    }),
    { credential: server.users.scram, approvals: gate },
  );
  try {
    const { out, err } = await psql(approving.url(), "DELETE FROM customers WHERE id = 42");
    expect(err).toMatch(/NOTICE: .*kubectl airlock approve areq-psql -n agents/);
    expect(out.trim()).toBe("DELETE 0");
  } finally {
    await approving.close();
  }
});
