// Code the statement text does not show, judged against a real PostgreSQL 15 catalog: every
// reproduction of "a write that passes as a read" (a writing function called directly, in WHERE,
// in FROM, through a view, a domain CHECK, a user-defined operator, an RLS policy, an aggregate,
// a STABLE function that calls a VOLATILE one, writing built-ins and extension functions) must be
// opaque and refused by a `statements: [read]` rule. Each is also run in a read-only transaction
// to show that PostgreSQL itself counts it as a write (SQLSTATE 25006), so the test cannot pass
// on a reproduction that does not write. Plain reads must stay allowed.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Catalog, CatalogCache, loadCatalog } from "../../sidecar/src/sql/catalog.ts";
import { loadSqlParser } from "../../sidecar/src/sql/index.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { clientQuery, judgeWithCatalog, sqlPolicy } from "./catalog-support.ts";

let server: PostgresServer;
let client: pg.Client;
let catalog: Catalog;

const SETUP = `
  CREATE TABLE orders (id int PRIMARY KEY, total numeric);
  INSERT INTO orders SELECT g, g FROM generate_series(1, 10) g;
  CREATE TABLE serials (id serial PRIMARY KEY, x text);
  CREATE FUNCTION purge_orders() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; RETURN 1; END $$;
  CREATE FUNCTION purge_rows() RETURNS SETOF orders LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; RETURN; END $$;
  CREATE FUNCTION purge_check(int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; RETURN true; END $$;
  CREATE FUNCTION purge_add(int, int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; RETURN $1 + $2; END $$;
  CREATE VIEW purging AS SELECT purge_orders() AS n;
  CREATE VIEW over_purging AS SELECT * FROM purging;
  CREATE VIEW locking AS SELECT pg_try_advisory_lock(42) AS l;
  CREATE DOMAIN checked_int AS int CHECK (purge_check(VALUE));
  CREATE DOMAIN rechecked_int AS checked_int;
  CREATE TABLE typed (c checked_int);
  CREATE TYPE checked_pair AS (a checked_int, b int);
  CREATE TYPE nested_pair AS (p checked_pair[]);
  CREATE FUNCTION defaulted(a int DEFAULT purge_orders()) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';
  CREATE FUNCTION takes_pair(p checked_pair) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1';
  CREATE TABLE ruled (id int, v int);
  CREATE TABLE ruled_log (m text);
  CREATE RULE also_log AS ON UPDATE TO ruled DO ALSO INSERT INTO ruled_log VALUES ('updated');
  CREATE TABLE parents (id int PRIMARY KEY);
  CREATE TABLE children (id int, parent int REFERENCES parents ON DELETE CASCADE);
  CREATE FUNCTION purge_trigger() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; RETURN OLD; END $$;
  CREATE TRIGGER purge_on_cascade AFTER DELETE ON children FOR EACH ROW EXECUTE FUNCTION purge_trigger();
  CREATE TABLE plain_parents (id int PRIMARY KEY);
  CREATE TABLE plain_children (id int, parent int REFERENCES plain_parents ON DELETE CASCADE);
  CREATE FUNCTION purge_of(orders) RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM orders; RETURN 1; END $$;
  CREATE TABLE discarding (id int);
  CREATE TABLE ddl_log (tag text);
  CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO ddl_log VALUES (tg_tag); END $$;
  CREATE EVENT TRIGGER log_sequences ON ddl_command_end WHEN TAG IN ('CREATE SEQUENCE') EXECUTE FUNCTION log_ddl();
  CREATE RULE discard AS ON DELETE TO discarding DO INSTEAD NOTHING;
  CREATE OPERATOR ## (LEFTARG = int, RIGHTARG = int, FUNCTION = purge_add);
  CREATE AGGREGATE purge_sum(int) (SFUNC = purge_add, STYPE = int, INITCOND = '0');
  CREATE FUNCTION stable_purge() RETURNS int LANGUAGE sql STABLE AS $$ SELECT purge_orders() $$;
  CREATE FUNCTION stable_plpgsql() RETURNS int LANGUAGE plpgsql STABLE AS $$ BEGIN RETURN purge_orders(); END $$;
  CREATE FUNCTION atomic_purge() RETURNS int LANGUAGE sql STABLE BEGIN ATOMIC SELECT purge_orders(); END;
  CREATE FUNCTION stable_over_view() RETURNS int LANGUAGE sql STABLE AS $$ SELECT n FROM purging $$;
  CREATE FUNCTION stable_dynamic(t text) RETURNS int LANGUAGE plpgsql STABLE AS $$
    DECLARE r int; BEGIN EXECUTE 'SELECT ' || t INTO r; RETURN r; END $$;
  CREATE FUNCTION safe_total() RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT sum(total) FROM orders $$;
  CREATE FUNCTION safe_plpgsql(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN i * 2; END $$;
  CREATE TABLE guarded (id int);
  INSERT INTO guarded VALUES (1);
  ALTER TABLE guarded ENABLE ROW LEVEL SECURITY;
  ALTER TABLE guarded FORCE ROW LEVEL SECURITY;
  CREATE POLICY purge_on_read ON guarded USING (purge_check(id));
  CREATE INDEX orders_brin ON orders USING brin (id);
  CREATE EXTENSION pg_surgery;
  CREATE EXTENSION pg_visibility;
  CREATE EXTENSION pg_stat_statements;
  CREATE ROLE reader;
  GRANT ALL ON ALL TABLES IN SCHEMA public TO reader;
`;

beforeAll(async () => {
  server = await startPostgres();
  await server.sql(SETUP);
  await loadSqlParser();
  client = new pg.Client({
    host: server.socketDir,
    port: server.port,
    user: server.superuser,
    database: server.database,
  });
  await client.connect();
  catalog = await loadCatalog(clientQuery(client));
});

afterAll(async () => {
  await client?.end();
  await server?.stop();
});

/** Runs `sql` in a read-only transaction: the SQLSTATE it fails with, or "ok". */
async function readOnlyOutcome(sql: string): Promise<string> {
  await client.query("BEGIN READ ONLY");
  // A role without BYPASSRLS, so that row-level security applies (the superuser skips it).
  await client.query("SET LOCAL ROLE reader");
  try {
    await client.query(sql);
    return "ok";
  } catch (err) {
    return (err as { code?: string }).code ?? "error";
  } finally {
    await client.query("ROLLBACK");
  }
}

const WRITES_PAST_A_READ_RULE: readonly (readonly [string, string])[] = [
  ["SELECT purge_orders()", "a writing function called directly"],
  ["SELECT * FROM orders WHERE purge_orders() > 0", "in WHERE"],
  ["SELECT id FROM orders ORDER BY purge_orders()", "in ORDER BY"],
  ["SELECT * FROM purge_rows()", "in FROM"],
  ["SELECT * FROM purging", "through a view"],
  ["SELECT * FROM public.over_purging", "through a view over a view"],
  ["SELECT * FROM locking", "a view calling a writing built-in (no pg_depend row for pinned functions)"],
  ["SELECT 1::checked_int", "a domain CHECK"],
  ["SELECT CAST(2 AS rechecked_int)", "a domain over a domain"],
  ["SELECT 2 ## 3", "a user-defined operator"],
  ["SELECT 2 OPERATOR(public.##) 3", "a schema-qualified operator"],
  ["SELECT purge_sum(id) FROM orders", "an aggregate whose transition function writes"],
  ["SELECT stable_purge()", "a STABLE SQL function calling a VOLATILE one"],
  ["SELECT stable_plpgsql()", "a STABLE PL/pgSQL function calling a VOLATILE one"],
  ["SELECT atomic_purge()", "a STABLE BEGIN ATOMIC function calling a VOLATILE one"],
  ["SELECT stable_over_view()", "a STABLE function reading a writing view"],
  ["SELECT stable_dynamic('purge_orders()')", "a STABLE function running dynamic SQL"],
  ["SELECT * FROM guarded", "a row-level security policy"],
  ["SELECT defaulted()", "an argument default of an IMMUTABLE function"],
  ["SELECT o.purge_of FROM orders o", "attribute notation: o.f is f(o)"],
  ["SELECT (o).purge_of FROM orders o", "attribute notation on a field selection"],
  ["SELECT id FROM orders WHERE orders.purge_of > 0", "attribute notation in WHERE"],
  ["SELECT ROW(1, 2)::checked_pair", "a composite type with a domain field"],
  ["SELECT '(1,2)'::checked_pair", "a composite type's input"],
  ["SELECT checked_pair '(1,2)'", "a typed literal of a composite type"],
  ["SELECT ROW(1)::typed", "a table's row type with a domain column"],
  ["SELECT * FROM json_populate_record(NULL::checked_pair, '{\"a\": 1}')", "a composite populated from JSON"],
  ["SELECT ROW(ARRAY[ROW(1, 2)::checked_pair])::nested_pair", "a composite nested in an array field"],
  ["SELECT takes_pair(ROW(1, 2))", "a function argument of such a composite"],
  ["SELECT * FROM jsonb_to_record('{\"a\": 1}') AS x(a checked_int)", "a column definition list"],
  ["PREPARE checked(checked_int) AS SELECT $1", "a PREPARE parameter type"],
  ["SELECT pg_advisory_lock(1)", "advisory locks"],
  ["SELECT pg_notify('ch', 'x')", "pg_notify"],
  ["SELECT brin_summarize_new_values('orders_brin')", "BRIN maintenance"],
  ["SELECT pg_truncate_visibility_map('orders')", "pg_visibility"],
  ["SELECT heap_force_kill('orders', ARRAY['(0,1)']::tid[])", "pg_surgery"],
  ["SELECT pg_stat_statements_reset()", "pg_stat_statements reset"],
  ["SELECT lo_create(0)", "large objects (runs even in a read-only transaction)"],
  ["SELECT pg_import_system_collations('public')", "writes the catalog in a read-only transaction"],
];

describe("code the text does not show", () => {
  it.each(WRITES_PAST_A_READ_RULE)("%s (%s) is opaque and refused by a read rule", async (sql) => {
    const j = judgeWithCatalog(sql, catalog);
    expect(j.calls?.opaque).toBe(true);
    expect(j.decision.action).toBe("deny");
    // The opaque call is a `call` entry no read rule covers (or a built-in denial came first).
    expect(j.decision.reason).toMatch(
      /default deny|always denied|may write or run code the statement does not show/,
    );
  });

  it("the reproductions really write: PostgreSQL refuses them in a read-only transaction, or they write anyway", async () => {
    const outcomes: Record<string, string> = {};
    for (const [sql] of WRITES_PAST_A_READ_RULE) outcomes[sql] = await readOnlyOutcome(sql);
    // These write (25006), or fail for reasons of their own (0A000 pg_stat_statements not
    // preloaded, 42501 ...), or succeed even though they write (lo_create, collations, locks).
    const refused = Object.entries(outcomes)
      .filter(([, code]) => code === "25006")
      .map(([sql]) => sql);
    expect(refused).toEqual(
      expect.arrayContaining([
        "SELECT purge_orders()",
        "SELECT * FROM purge_rows()",
        "SELECT * FROM purging",
        "SELECT 1::checked_int",
        "SELECT 2 ## 3",
        "SELECT purge_sum(id) FROM orders",
        "SELECT stable_purge()",
        "SELECT stable_plpgsql()",
        "SELECT atomic_purge()",
        "SELECT * FROM guarded",
        "SELECT defaulted()",
        "SELECT o.purge_of FROM orders o",
        "SELECT (o).purge_of FROM orders o",
        "SELECT ROW(1, 2)::checked_pair",
        "SELECT '(1,2)'::checked_pair",
        "SELECT ROW(1)::typed",
        "SELECT * FROM jsonb_to_record('{\"a\": 1}') AS x(a checked_int)",
      ]),
    );
  });

  it("names the opaque function and how the statement reaches it", () => {
    const view = judgeWithCatalog("SELECT * FROM over_purging", catalog).calls?.statements[0]?.opaque;
    expect(view).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          function: "public.purge_orders",
          via: "relation",
          through: "public.over_purging",
        }),
      ]),
    );
    const op = judgeWithCatalog("SELECT 2 ## 3", catalog).calls?.statements[0]?.opaque;
    expect(op).toEqual([expect.objectContaining({ function: "public.purge_add", via: "operator" })]);
    const stable = catalog.functionsByName.get("stable_purge")?.[0]?.opaque;
    expect(stable).toBe("its body mentions purge_orders, which is opaque");
  });

  it("writes through defaults, domains and triggers of the written table are opaque too", () => {
    expect(judgeWithCatalog("INSERT INTO typed VALUES (1)", catalog).calls?.opaque).toBe(true);
    // A rule that runs a statement of its own when the table is written (the approver of the
    // UPDATE would not see the INSERT); one that only discards the write is harmless.
    const ruled = judgeWithCatalog("UPDATE ruled SET v = 2", catalog).calls;
    expect(ruled?.opaque).toBe(true);
    expect(ruled?.statements[0]?.opaque).toEqual([
      expect.objectContaining({
        via: "relation",
        through: "public.ruled",
        reason: expect.stringMatching(/rule/),
      }),
    ]);
    expect(judgeWithCatalog("DELETE FROM discarding", catalog).calls?.opaque).toBe(false);
    // A foreign key that cascades runs the referencing table's triggers (and rules) too.
    expect(judgeWithCatalog("DELETE FROM parents WHERE id = 1", catalog).calls?.opaque).toBe(true);
    expect(judgeWithCatalog("DELETE FROM plain_parents WHERE id = 1", catalog).calls?.opaque).toBe(false);
    expect(judgeWithCatalog("SELECT * FROM ruled", catalog).calls?.opaque).toBe(false);
    // A serial column's nextval default does not make every INSERT opaque.
    expect(judgeWithCatalog("INSERT INTO serials (x) VALUES ('a')", catalog).calls?.opaque).toBe(false);
  });

  it("an allow rule that lists `call` and names the function lets an opaque statement through", () => {
    const policies = sqlPolicy([
      { name: "read", action: "allow", match: { sql: { statements: ["read"] } } },
      {
        name: "purge",
        action: "allow",
        match: { sql: { statements: ["call"], functions: ["public.purge_orders"] } },
      },
    ]);
    expect(judgeWithCatalog("SELECT purge_orders()", catalog, policies).decision.action).toBe("allow");
    expect(judgeWithCatalog("SELECT purge_check(1)", catalog, policies).decision.action).toBe("deny");
  });

  it("an unknown function, or one created earlier in the same text, is opaque", () => {
    expect(judgeWithCatalog("SELECT no_such_function(1)", catalog).calls?.opaque).toBe(true);
    const text = "CREATE VIEW later AS SELECT 1 AS x; SELECT * FROM orders";
    const calls = judgeWithCatalog(text, catalog).calls;
    expect(calls?.statements[1]?.opaque).toEqual([expect.objectContaining({ via: "catalog-change" })]);
  });

  it.each([
    "SELECT now(), random(), clock_timestamp(), count(*), sum(total) FROM orders",
    "SELECT * FROM orders WHERE id BETWEEN 1 AND 3 AND total > 0 ORDER BY id LIMIT 2",
    "SELECT id FROM orders WHERE id IN (1, 2) OR id = ANY (ARRAY[3]) OR total::text LIKE '1%'",
    "SELECT safe_total(), safe_plpgsql(2), upper('x'), extract(year from now()), trim(both ' ' from 'a ')",
    "SELECT * FROM pg_stat_activity",
    "SELECT * FROM pg_locks",
    "SELECT table_name, column_name FROM information_schema.columns",
    "SELECT pg_relation_size('orders'), pg_size_pretty(pg_database_size(current_database()))",
    "SELECT nextval('serials_id_seq')",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total) FROM orders",
    "SELECT * FROM pg_stat_statements",
    "SELECT ROW(1, 2), '(1,2)'::orders, ROW(1, 2)::orders",
    "SELECT * FROM jsonb_to_record('{\"a\": 1}') AS x(a int)",
  ])("a plain read stays a read: %s", (sql) => {
    const j = judgeWithCatalog(sql, catalog);
    expect(j.calls?.statements.flatMap((s) => s.opaque)).toEqual([]);
  });
});

describe("operators the grammar implies", () => {
  // A database whose own `=` for varchar writes: every statement that uses it must be opaque,
  // including those whose text never spells `=`. (A database of its own: this `=` makes every
  // comparison opaque, by name.)
  let implied: pg.Client;
  let impliedCatalog: Catalog;
  beforeAll(async () => {
    await server.sql("CREATE DATABASE implied", { database: "postgres" });
    await server.sql(
      `CREATE TABLE tv (v varchar);
       INSERT INTO tv VALUES ('a');
       CREATE TABLE eq_log (n int);
       CREATE FUNCTION logging_eq(varchar, varchar) RETURNS boolean LANGUAGE plpgsql AS
         $$ BEGIN INSERT INTO eq_log VALUES (1); RETURN $1::text = $2::text; END $$;
       CREATE OPERATOR = (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = logging_eq);
       CREATE FUNCTION log_two() RETURNS void LANGUAGE plpgsql AS $$ BEGIN INSERT INTO eq_log VALUES (2); END $$;
       CREATE FUNCTION logging_diff(float8, float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS
         $$ BEGIN PERFORM log_two(); RETURN $1 - $2; END $$;
       CREATE TYPE logged_range AS RANGE (subtype = float8, subtype_diff = logging_diff);`,
      { database: "implied" },
    );
    implied = new pg.Client({
      host: server.socketDir,
      port: server.port,
      user: server.superuser,
      database: "implied",
    });
    await implied.connect();
    impliedCatalog = await loadCatalog(clientQuery(implied));
  });
  afterAll(async () => {
    await implied?.end();
  });

  it("a range type's subtype_diff (called by the planner) is code any statement may run", () => {
    expect(impliedCatalog.implicitOpaque.map((f) => f.name)).toContain("logging_diff");
  });

  it.each([
    "SELECT CASE v WHEN 'a' THEN 1 END FROM tv",
    "SELECT * FROM tv JOIN tv t2 USING (v)",
    "SELECT * FROM tv NATURAL JOIN tv t2",
    "SELECT v FROM tv WHERE v IN (SELECT v FROM tv)",
  ])("%s runs the database's = and is opaque", async (sql) => {
    expect(judgeWithCatalog(sql, impliedCatalog).calls?.opaque).toBe(true);
    // The reproduction writes: PostgreSQL refuses it in a read-only transaction.
    await implied.query("BEGIN READ ONLY");
    const code = await implied.query(sql).then(
      () => "ok",
      (e: { code?: string }) => e.code,
    );
    await implied.query("ROLLBACK");
    expect(code).toBe("25006");
  });
});

describe("event triggers", () => {
  it("DDL runs the functions of enabled event triggers: opaque whatever its tag (tags are not read)", async () => {
    const j = judgeWithCatalog("CREATE SEQUENCE logged_seq", catalog);
    expect(j.calls?.statements[0]?.opaque).toEqual([
      expect.objectContaining({ function: "public.log_ddl", via: "implicit", through: "an event trigger" }),
    ]);
    expect(judgeWithCatalog("CREATE TABLE other_table (a int)", catalog).calls?.opaque).toBe(true);
    expect(judgeWithCatalog("SELECT * FROM orders", catalog).calls?.opaque).toBe(false);
    // The reproduction writes: the event trigger's function inserted a row.
    await client.query("CREATE SEQUENCE logged_seq");
    expect((await client.query("SELECT tag FROM ddl_log")).rows).toEqual([{ tag: "CREATE SEQUENCE" }]);
  });
});

describe("catalog cache", () => {
  it("reloads when a function changes, and only then", async () => {
    const cache = new CatalogCache();
    const q = clientQuery(client);
    const first = await cache.get("db", q);
    expect(await cache.get("db", q)).toBe(first);
    expect(cache.loads).toBe(1);
    expect(judgeWithCatalog("SELECT safe_total()", first).calls?.opaque).toBe(false);
    await server.sql(
      "CREATE OR REPLACE FUNCTION safe_total() RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT purge_orders()::numeric $$",
    );
    const second = await cache.get("db", q);
    expect(second).not.toBe(first);
    expect(cache.loads).toBe(2);
    expect(judgeWithCatalog("SELECT safe_total()", second).calls?.opaque).toBe(true);
    // Within maxAgeMs no query is sent at all.
    expect(
      await cache.get("db", async () => Promise.reject(new Error("not asked")), { maxAgeMs: 60_000 }),
    ).toBe(second);
  });
});
