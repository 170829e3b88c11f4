// Large objects on the wire: what psql and SQL can do with them through the guard. They live
// outside tables (no column rule can mask them) and lo_import/lo_export reach server files, so
// every way in is refused whatever the rules allow — psql's \lo_* commands (fast-path function
// calls over the protocol) and the SQL functions alike — while each is first shown to work on a
// direct connection with the same role (so no refusal here is vacuous).
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PG_BIN_DIR, type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type GuardedPostgres, pgPolicy, startGuard } from "./support.ts";

const run = promisify(execFile);
let server: PostgresServer;
let g: GuardedPostgres;
let dir: string;
let oid: string;
const SECRET = "4111 1111 1111 1111";

beforeAll(async () => {
  server = await startPostgres();
  // A large object the agent's role owns, holding what a column rule would mask.
  const owner = server.users.scram.user;
  oid = (await server.sql(`SELECT lo_from_bytea(0, convert_to('${SECRET}', 'UTF8'))`)).trim();
  await server.sql(`ALTER LARGE OBJECT ${oid} OWNER TO ${owner}`);
  g = await startGuard(
    pgPolicy(server, {
      rules: [{ name: "everything", action: "allow", match: { sql: { statements: ["*"] } } }],
      masking: [{ name: "cards", columns: ["card_number"], strategy: "redact" }],
    }),
    { credential: server.users.scram },
  );
  dir = await mkdtemp(join(tmpdir(), "airlock-lo-"));
  await writeFile(join(dir, "in.txt"), "planted by the agent");
});

afterAll(async () => {
  await g?.close();
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

type Conn = "guard" | "direct";

async function psql(to: Conn, sql: string): Promise<{ ok: boolean; out: string }> {
  const u = server.users.scram;
  const dsn =
    to === "guard"
      ? `host=127.0.0.1 port=${g.port} user=agent dbname=airlock connect_timeout=5 sslmode=disable`
      : `host=127.0.0.1 port=${server.port} user=${u.user} password=${u.password} dbname=${server.database} sslmode=disable`;
  return run(`${PG_BIN_DIR}/psql`, [dsn, "-XAt", "-v", "ON_ERROR_STOP=1", "-c", sql], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? "" },
  }).then(
    (r) => ({ ok: true, out: r.stdout.trim() }),
    (e: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${e.stdout ?? ""}${e.stderr ?? ""}` }),
  );
}

describe("large objects through the guard, even under an allow-everything rule", () => {
  it.each([
    ["SQL lo_get", () => `SELECT convert_from(lo_get(${oid}), 'UTF8')`],
    ["SQL loread(lo_open())", () => `SELECT convert_from(loread(lo_open(${oid}, 262144), 100), 'UTF8')`],
    [
      "SQL lo_export to a server file",
      () => `SELECT lo_export(${oid}, '/tmp/airlock-lo-export-${process.pid}')`,
    ],
    ["SQL lo_put", () => `SELECT lo_put(${oid}, 0, '\\x41')`],
    ["SQL lo_unlink", () => `SELECT lo_unlink(${oid})`],
  ])("%s is refused", async (_what, sql) => {
    const guarded = await psql("guard", sql());
    expect(guarded.ok, guarded.out).toBe(false);
    expect(guarded.out).toMatch(/Airlock denied this statement/);
    expect(guarded.out).not.toContain(SECRET);
  });

  it("the same reads work directly for the same role (the refusals above are not vacuous)", async () => {
    expect(await psql("direct", `SELECT convert_from(lo_get(${oid}), 'UTF8')`)).toEqual({
      ok: true,
      out: SECRET,
    });
    expect(
      await psql("direct", `SELECT convert_from(loread(lo_open(${oid}, 262144), 100), 'UTF8')`),
    ).toMatchObject({ ok: true, out: SECRET });
  });

  it("psql's \\lo_export and \\lo_import (fast-path calls) are refused; nothing is written or read", async () => {
    const exported = await psql("guard", `\\lo_export ${oid} out.txt`);
    expect(exported.ok).toBe(false);
    expect(exported.out).toMatch(/fast-path function calls are refused/);
    const imported = await psql("guard", "\\lo_import in.txt");
    expect(imported.ok).toBe(false);
    expect(imported.out).toMatch(/fast-path function calls are refused|Airlock denied/);
    const count = await server.sql("SELECT count(*) FROM pg_largeobject_metadata");
    expect(count.trim()).toBe("1");
    // Directly, the same role can do both.
    expect((await psql("direct", `\\lo_export ${oid} direct.txt`)).ok).toBe(true);
  });

  it("the session goes on after each refusal", async () => {
    expect(await psql("guard", "SELECT 1")).toEqual({ ok: true, out: "1" });
  });
});
