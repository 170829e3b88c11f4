// The bypass suite end to end (the cases marked e2e in test/fixtures/sql-bypass-cases.ts): sent by a
// client through the sidecar to a real PostgreSQL, in the simple and the extended protocol.
// Denied cases must come back as SQLSTATE 42501 and leave the database untouched; allowed ones
// must not be refused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BYPASS_CASES, BYPASS_POLICY } from "../fixtures/sql-bypass-cases.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { bindMessage, errorOf, executeMessage, parseMessage, RawClient, syncMessage } from "./raw-client.ts";
import { type GuardedPostgres, pgPolicy, startGuard } from "./support.ts";

let server: PostgresServer;
let guard: GuardedPostgres;
let agent: RawClient;

const STATE_SQL =
  "SELECT (SELECT count(*) FROM orders) || '/' || (SELECT count(*) FROM pg_tables WHERE schemaname = 'public') || '/' || (SELECT count(*) FROM customers)";

beforeAll(async () => {
  server = await startPostgres();
  await server.sql(`
    CREATE TABLE orders (id int PRIMARY KEY, customer_id int, total numeric);
    CREATE TABLE customers (id int PRIMARY KEY, name text);
    CREATE TABLE secrets (id int, x text);
    CREATE SEQUENCE orders_id_seq;
    INSERT INTO orders SELECT g, g, g FROM generate_series(1, 10) g;
    INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 10) g;
    GRANT ALL ON ALL TABLES IN SCHEMA public TO airlock_scram;
    GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO airlock_scram;
    GRANT CREATE ON SCHEMA public TO airlock_scram;
  `);
  // The upstream role may do far more than the policy allows: the sidecar is what stops it.
  guard = await startGuard(pgPolicy(server, { rules: BYPASS_POLICY.spec.rules }), {
    credential: server.users.scram,
  });
  agent = await RawClient.connect(guard.port);
  await agent.startup();
});

afterAll(async () => {
  agent?.close();
  await guard?.close();
  await server?.stop();
});

const cases = BYPASS_CASES.filter((c) => c.e2e);

describe("bypass suite through a real PostgreSQL", () => {
  let before = "";
  beforeAll(async () => {
    before = await server.sql(STATE_SQL);
  });

  it.each(cases.map((c) => [c.why, c] as const))("simple protocol: %s", async (_why, c) => {
    const msgs = await agent.query(c.sql);
    const denial = msgs.map(errorOf).find((e) => e?.code === "42501");
    if (c.expect === "deny") expect(denial?.message).toMatch(/^Airlock denied this statement/);
    else expect(denial).toBeUndefined();
    if (msgs.at(-1)?.payload.toString() !== "I") await agent.query("ROLLBACK");
  });

  const single = cases.filter((c) => !c.sql.replace(/\$\$[^$]*\$\$|'[^']*'/g, "").includes(";"));
  it.each(single.map((c) => [c.why, c] as const))("extended protocol: %s", async (_why, c) => {
    await agent.write(
      Buffer.concat([parseMessage("", c.sql), bindMessage("", "", []), executeMessage(""), syncMessage()]),
    );
    const msgs = await agent.until("Z");
    const denial = msgs.map(errorOf).find((e) => e?.code === "42501");
    if (c.expect === "deny") expect(denial?.message).toMatch(/^Airlock denied this statement/);
    else expect(denial).toBeUndefined();
    if (msgs.at(-1)?.payload.toString() !== "I") await agent.query("ROLLBACK");
  });

  it("left the database and the session as they were", async () => {
    expect(await server.sql(STATE_SQL)).toBe(before);
    const msgs = await agent.query(
      "SELECT current_user, current_setting('search_path'), current_setting('default_transaction_read_only')",
    );
    const row = msgs.find((m) => m.type === "D");
    expect(row?.payload.toString()).toContain("airlock_scram");
    expect(row?.payload.toString()).toContain('"$user", public');
    expect(row?.payload.toString()).toMatch(/on$/);
  });
});
