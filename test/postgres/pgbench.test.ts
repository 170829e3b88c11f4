// pgbench through the PostgreSQL guard: select-only in all three query modes (simple, extended,
// prepared) and the default mixed read/write transaction, short and bounded. This is a
// functional test (no failed transactions, statements audited); numbers are for `npm run bench`.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pgbench } from "../bench/postgres.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { type GuardedPostgres, pgPolicy, startGuard } from "./support.ts";

let server: PostgresServer;
let guard: GuardedPostgres;
let audited = 0;

beforeAll(async () => {
  server = await startPostgres();
  await server.initPgbench(1);
  guard = await startGuard(
    pgPolicy(server, {
      rules: [
        {
          name: "no-ddl",
          action: "deny",
          match: { sql: { statements: ["create", "alter", "drop", "truncate"] } },
        },
        {
          name: "bench",
          action: "allow",
          match: { sql: { statements: ["read", "write", "transaction"], tables: ["pgbench_*"] } },
        },
        { name: "session", action: "allow", match: { sql: { statements: ["transaction", "set", "show"] } } },
      ],
      masking: [{ name: "pii", columns: ["email"], detectors: ["email", "creditCard"], strategy: "partial" }],
    }),
    { credential: server.users.scram, keepAudit: false, audit: () => void audited++ },
  );
}, 120_000);

afterAll(async () => {
  await guard?.close();
  await server?.stop();
});

const env = () => ({ PGHOST: "127.0.0.1", PGPORT: String(guard.port), PGUSER: "agent" });

describe("pgbench through the sidecar", () => {
  it.each([
    ["select-only, simple protocol", ["-S", "-M", "simple"]],
    ["select-only, extended protocol", ["-S", "-M", "extended"]],
    ["select-only, prepared statements", ["-S", "-M", "prepared"]],
    ["tpcb-like mixed read/write", []],
  ])("%s", async (_name, args) => {
    const before = audited;
    const r = await pgbench([...args, "-n", "-c", "2", "-j", "2", "-T", "2", server.database], env());
    expect(r.failed).toBe(0);
    expect(r.transactions).toBeGreaterThan(50);
    expect(r.tps).toBeGreaterThan(0);
    expect(audited - before).toBeGreaterThanOrEqual(r.transactions);
  });

  it("vacuum (run by pgbench without -n) is refused by policy and pgbench says so", async () => {
    const r = await pgbench(["-S", "-c", "1", "-t", "5", server.database], env());
    expect(r.output).toMatch(/Airlock denied this statement/);
    expect(r.failed).toBe(0);
  });
});
