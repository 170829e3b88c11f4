// `airlock policy test --sql --database URL` judges against the database's catalog as the sidecar
// does: a function that writes, called from a SELECT, is refused under a read-only rule; without
// --database the CLI says its answer comes from the text alone. Real PostgreSQL, the real CLI.
import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
let server: PostgresServer;
let policyFile: string;

function airlock(args: string[], env: NodeJS.ProcessEnv = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      ["bin/airlock.js", ...args],
      { cwd: root, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

beforeAll(async () => {
  server = await startPostgres();
  await server.sql(`
    CREATE TABLE orders (id int);
    CREATE FUNCTION purge_orders() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; RETURN 1; END $$;
    CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM orders';
  `);
  const dir = mkdtempSync(join(tmpdir(), "airlock-policy-test-"));
  policyFile = join(dir, "p.yaml");
  writeFileSync(
    policyFile,
    `apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: p, namespace: default }
spec:
  connections:
    - { name: db, protocol: postgres, target: { host: db, port: 5432 } }
  rules:
    - { name: read, action: allow, match: { sql: { statements: [read] } } }
`,
  );
});

afterAll(async () => server?.stop());

const base = () => ["policy", "test", "--policy", policyFile, "--connection", "db"];
const url = () => `postgresql://${server.users.scram.user}@127.0.0.1:${server.port}/airlock?sslmode=disable`;

it("with --database, a SELECT of a function that writes is refused as the sidecar refuses it", async () => {
  const r = await airlock([...base(), "--sql", "SELECT purge_orders()", "--database", url()], {
    PGPASSWORD: server.users.scram.password,
  });
  expect(r.code, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout);
  expect(out).toMatchObject({ decision: "deny", catalog: "loaded" });
  expect(out.reason).toMatch(/purge_orders.*may write or run code the statement does not show/);
  // A STABLE function and a built-in stay reads.
  for (const sql of ["SELECT order_count()", "SELECT upper('x')"]) {
    const ok = await airlock([...base(), "--sql", sql, "--database", url()], {
      PGPASSWORD: server.users.scram.password,
    });
    expect(JSON.parse(ok.stdout), sql).toMatchObject({ decision: "allow", rule: "read", catalog: "loaded" });
  }
});

it("without --database the answer says it judged the text alone", async () => {
  const r = await airlock([...base(), "--sql", "SELECT purge_orders()"]);
  expect(JSON.parse(r.stdout)).toMatchObject({
    catalog: expect.stringMatching(/^not loaded: judged by the text alone/),
  });
  const plain = await airlock([...base(), "--sql", "SELECT 1"]);
  expect(JSON.parse(plain.stdout).catalog).toBeUndefined();
});

it("a database it cannot read is a one-line error with exit 2, and the password never shows", async () => {
  const r = await airlock([...base(), "--sql", "SELECT 1", "--database", url()], {
    PGPASSWORD: "wrong-secret-pw",
  });
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(
    /^airlock policy test: cannot read the catalog of airlock_scram@127\.0\.0\.1:\d+\/airlock: /,
  );
  expect(r.stderr).not.toContain("wrong-secret-pw");
  expect(r.stderr.trim().split("\n")).toHaveLength(1);
  const bad = await airlock([...base(), "--sql", "SELECT 1", "--database", "mysql://x@y/z"]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/must be a postgresql:\/\/ URL/);
});
