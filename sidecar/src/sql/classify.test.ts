import { beforeAll, describe, expect, it } from "vitest";
import { classificationCacheStats, classify, classifySync, loadSqlParser } from "./index.ts";
import { numericShape } from "./literals.ts";
import { Lru } from "./lru.ts";

beforeAll(() => loadSqlParser());

const kinds = (sql: string) => classifySync(sql).statements.map((s) => s.kind);
const summary = (sql: string) =>
  classifySync(sql).statements.map((s) => ({
    kind: s.kind,
    tables: [...s.tables].sort(),
    ...(s.nested ? { nested: s.nested } : {}),
  }));
const denials = (sql: string) => classifySync(sql).denials.map((d) => d.what);

describe("statement kinds", () => {
  it.each([
    ["SELECT 1", "select"],
    ["VALUES (1)", "select"],
    ["INSERT INTO t VALUES (1)", "insert"],
    ["UPDATE t SET a = 1", "update"],
    ["DELETE FROM t", "delete"],
    ["MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1", "merge"],
    ["TRUNCATE t", "truncate"],
    ["COPY t FROM STDIN", "copyFrom"],
    ["COPY t TO STDOUT", "copyTo"],
    ["COPY (SELECT 1) TO STDOUT", "copyTo"],
    ["CREATE TABLE t (a int)", "create"],
    ["CREATE INDEX ON t (a)", "create"],
    ["CREATE VIEW v AS SELECT 1", "create"],
    ["CREATE EXTENSION dblink", "create"],
    ["ALTER TABLE t ADD COLUMN b int", "alter"],
    ["COMMENT ON TABLE t IS 'x'", "alter"],
    ["ALTER TABLE t RENAME TO u", "alter"],
    ["DROP TABLE t", "drop"],
    ["DROP SCHEMA s CASCADE", "drop"],
    ["GRANT SELECT ON t TO bob", "grant"],
    ["REVOKE SELECT ON t FROM bob", "revoke"],
    ["GRANT admin TO bob", "grant"],
    ["BEGIN", "transaction"],
    ["COMMIT", "transaction"],
    ["ROLLBACK TO SAVEPOINT a", "transaction"],
    ["SET CONSTRAINTS ALL DEFERRED", "transaction"],
    ["SET statement_timeout = 5", "set"],
    ["SHOW work_mem", "show"],
    ["EXPLAIN SELECT 1", "explain"],
    ["EXPLAIN ANALYZE SELECT 1", "select"],
    ["EXPLAIN (ANALYZE false) DELETE FROM t", "delete"],
    ["EXPLAIN (ANALYZE off) SELECT 1", "explain"],
    ["CALL p()", "call"],
    ["DO $$ BEGIN END $$", "do"],
    ["LOCK TABLE t", "lock"],
    ["VACUUM t", "maintenance"],
    ["ANALYZE t", "maintenance"],
    ["REINDEX TABLE t", "maintenance"],
    ["CLUSTER t", "maintenance"],
    ["CHECKPOINT", "maintenance"],
    ["REFRESH MATERIALIZED VIEW v", "maintenance"],
    ["LISTEN ch", "other"],
    ["NOTIFY ch", "other"],
    ["DECLARE c CURSOR FOR SELECT * FROM t", "select"],
    ["FETCH 10 FROM c", "select"],
    ["CLOSE c", "housekeeping"],
    ["CLOSE ALL", "housekeeping"],
    ["UNLISTEN *", "housekeeping"],
    ["DISCARD ALL", "housekeeping"],
    ["RESET ALL", "housekeeping"],
    ["RESET statement_timeout", "housekeeping"],
    ["SELECT pg_advisory_unlock_all()", "housekeeping"],
    ["SELECT pg_catalog.pg_advisory_unlock_all()", "housekeeping"],
    ["SELECT pg_advisory_unlock_all() FROM t", "select"],
    ["SELECT pg_advisory_unlock_all(), 1", "select"],
    ["SET statement_timeout = 0", "set"],
    ["PREPARE p AS UPDATE t SET a = 1", "update"],
    ["EXECUTE p", "other"],
    ["DEALLOCATE p", "housekeeping"],
    ["DEALLOCATE ALL", "housekeeping"],
    ["SELECT * INTO u FROM t", "create"],
    ["CREATE TABLE u AS SELECT * FROM t", "create"],
  ] as const)("%s → %s", (sql, kind) => {
    expect(kinds(sql)[0]).toBe(kind);
  });
});

describe("tables and functions", () => {
  it("collects tables from every clause, qualified as written", () => {
    expect(
      summary("SELECT * FROM a JOIN s.b ON true WHERE x IN (SELECT y FROM c) ORDER BY (SELECT 1 FROM d)"),
    ).toEqual([{ kind: "select", tables: ["a", "c", "d", "s.b"] }]);
  });
  it("quotes identifiers that are not plain lower case", () => {
    expect(classifySync('SELECT * FROM "Weird"."a.b", "x""y"').statements[0]?.tables).toEqual([
      '"Weird"."a.b"',
      '"x""y"',
    ]);
  });
  it("does not count CTE names as tables, within their scope only", () => {
    expect(summary("WITH a AS (SELECT * FROM t) SELECT * FROM a")).toEqual([
      { kind: "select", tables: ["t"] },
    ]);
    expect(summary("WITH a AS (SELECT * FROM a) SELECT 1")).toEqual([{ kind: "select", tables: ["a"] }]);
    expect(summary("WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b")).toEqual([
      { kind: "select", tables: [] },
    ]);
    expect(summary("WITH b AS (SELECT * FROM a), a AS (SELECT 1) SELECT * FROM b")).toEqual([
      { kind: "select", tables: ["a"] },
    ]);
    expect(summary("SELECT * FROM (WITH s AS (SELECT 1) SELECT * FROM s) x, s")).toEqual([
      { kind: "select", tables: ["s"] },
    ]);
  });
  it("a DML target is a table even when a CTE has its name", () => {
    expect(summary("WITH t AS (SELECT 1) INSERT INTO t SELECT * FROM t")).toEqual([
      { kind: "insert", tables: ["t"] },
    ]);
  });
  it("collects function names as written, including nested calls", () => {
    expect(classifySync("SELECT upper(lower(x)), pg_catalog.now() FROM t").statements[0]?.functions).toEqual([
      "upper",
      "lower",
      "pg_catalog.now",
    ]);
  });
  it("names dropped relations", () => {
    expect(summary("DROP TABLE a.b, c")).toEqual([{ kind: "drop", tables: ["a.b", "c"] }]);
  });
});

describe("nested writes", () => {
  it("a SELECT whose CTE deletes is also a delete", () => {
    expect(summary("WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d JOIN b USING (id)")).toEqual([
      { kind: "select", tables: ["a", "b"] },
      { kind: "delete", tables: ["a"], nested: "cte" },
    ]);
  });
  it("every data-modifying CTE adds an entry", () => {
    expect(
      summary(
        "WITH x AS (UPDATE a SET v = 1 RETURNING *), y AS (INSERT INTO b SELECT * FROM x RETURNING *) DELETE FROM c",
      ),
    ).toEqual([
      { kind: "delete", tables: ["a", "b", "c"] },
      { kind: "update", tables: ["a"], nested: "cte" },
      { kind: "insert", tables: ["b"], nested: "cte" },
    ]);
  });
  it("FOR UPDATE adds an update on the tables read", () => {
    expect(summary("SELECT * FROM a JOIN b USING (id) FOR UPDATE OF a")).toEqual([
      { kind: "select", tables: ["a", "b"] },
      { kind: "update", tables: ["a", "b"], nested: "locking" },
    ]);
  });
  it("nextval adds an update on the sequence", () => {
    expect(summary("INSERT INTO t VALUES (nextval('s.seq'::regclass))")).toEqual([
      { kind: "insert", tables: ["t"] },
      { kind: "update", tables: ["s.seq"], nested: "sequence" },
    ]);
    expect(summary("SELECT nextval(name) FROM seqs")[1]).toEqual({
      kind: "update",
      tables: ["(dynamic)"],
      nested: "sequence",
    });
  });
  it("plain EXPLAIN executes nothing nested", () => {
    expect(summary("EXPLAIN WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d")).toEqual([
      { kind: "explain", tables: ["a"] },
    ]);
  });
  it("EXPLAIN ANALYZE keeps nested entries", () => {
    expect(
      summary("EXPLAIN ANALYZE WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d").map((s) => s.kind),
    ).toEqual(["select", "delete"]);
  });
});

describe("multi-statement text", () => {
  it("classifies every statement, with its own fingerprint", () => {
    const c = classifySync("SELECT 1; /* x */ DELETE FROM t WHERE a = 'é'; SELECT 2");
    expect(c.statements.map((s) => [s.kind, s.index])).toEqual([
      ["select", 0],
      ["delete", 1],
      ["select", 2],
    ]);
    expect(c.statements[0]?.fingerprint).toBe(c.statements[2]?.fingerprint);
    expect(c.statements[1]?.fingerprint).toBe(
      classifySync("delete from t where a = 'x'").statements[0]?.fingerprint,
    );
  });
  it("empty and comment-only text has no statements", () => {
    for (const sql of ["", " ", ";", "-- nothing", "/* */ ;;"])
      expect(classifySync(sql)).toMatchObject({ statements: [], errors: [], denials: [] });
  });
});

describe("session effects", () => {
  it("tracks PREPARE, EXECUTE, DEALLOCATE, DISCARD ALL and cursors", () => {
    const effects = (sql: string) => classifySync(sql).statements.map((s) => s.effect);
    expect(effects("PREPARE p (int) AS SELECT $1")).toEqual([{ kind: "prepare", name: "p" }]);
    expect(effects("EXECUTE p (1)")).toEqual([{ kind: "execute", name: "p" }]);
    expect(effects("EXPLAIN ANALYZE EXECUTE p (1)")).toEqual([{ kind: "execute", name: "p" }]);
    expect(effects("DEALLOCATE p")).toEqual([{ kind: "deallocate", name: "p" }]);
    expect(effects("DEALLOCATE ALL")).toEqual([{ kind: "deallocate" }]);
    expect(effects("DISCARD ALL")).toEqual([{ kind: "discard" }]);
    expect(effects("DISCARD PLANS")).toEqual([undefined]);
    expect(effects("DECLARE c BINARY CURSOR FOR SELECT 1")).toEqual([
      { kind: "declareCursor", name: "c", binary: true },
    ]);
  });
  it("functions in EXECUTE parameters are collected and checked", () => {
    expect(classifySync("EXECUTE p (pg_sleep(5))").denials.map((d) => d.what)).toEqual(["function pg_sleep"]);
  });
});

describe("built-in denials", () => {
  it.each([
    ["SELECT pg_read_file('/etc/passwd')", "function pg_read_file"],
    ["SELECT lo_creat(-1)", "function lo_creat"],
    ["SELECT dblink_connect('x')", "function dblink_connect"],
    ["SELECT database_to_xml(true, true, '')", "function database_to_xml"],
    ["SELECT 1 FROM t WHERE set_config('a.b', 'c', true) IS NULL", "function set_config"],
    // A parameter value may be anything: a guarded setting stays refused.
    ["SELECT set_config('search_path', $1, false)", "set_config search_path"],
    ["SELECT set_config('client_encoding', $1, false)", "set_config client_encoding"],
    ["SELECT current_setting('jit'), set_config('jit', 'off', false), now()", "function set_config"],
    [
      "SELECT set_config('jit', 'off', false), set_config('statement_timeout', '0', false)",
      "function set_config",
    ],
    ["ALTER TABLE t ALTER COLUMN a SET DEFAULT pg_sleep(1)", "function pg_sleep"],
    ["SET search_path TO x", "SET search_path"],
    ["SET search_path FROM CURRENT", "SET search_path"],
    ["RESET session_authorization", "RESET session_authorization"],
    ["SET client_encoding TO 'LATIN1'", "SET client_encoding"],
    ["ALTER DATABASE d SET default_transaction_read_only = off", "SET default_transaction_read_only"],
    ["BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE", "BEGIN/START TRANSACTION ... READ WRITE"],
    ["COPY t TO PROGRAM 'x'", "COPY ... PROGRAM"],
    ["COPY t FROM '/x'", "COPY with a server file"],
    ["ALTER SYSTEM SET work_mem = '1GB'", "ALTER SYSTEM"],
    ["LOAD 'x'", "LOAD"],
    ["DO $$ BEGIN EXECUTE 'select pg_read_file(''x'')'; END $$", "DO block mentioning pg_read_file"],
  ])("%s", (sql, what) => {
    expect(denials(sql)).toContain(what);
  });
  it.each([
    "SET client_encoding = 'utf-8'",
    "SET NAMES 'UTF8'",
    "RESET client_encoding",
    "BEGIN READ ONLY",
    "SET TRANSACTION READ ONLY",
    "SET statement_timeout TO DEFAULT",
    "SELECT current_setting('search_path')",
    // asyncpg's type introspection turns jit off around its query and restores it.
    "SELECT current_setting('jit') AS cur, set_config('jit', 'off', false) AS new",
    "SELECT set_config('jit', $1, false)",
    "RESET ALL",
    "SELECT currval('s')",
  ])("%s is not denied", (sql) => {
    expect(denials(sql)).toEqual([]);
  });
});

describe("failure is closed", () => {
  it("reports parse errors and no statements", () => {
    const c = classifySync("SELECT * FRM t");
    expect(c.statements).toEqual([]);
    expect(c.errors[0]).toMatch(/does not parse: syntax error/);
    expect(c.error).toBe(c.errors[0]);
  });
  it("one bad statement fails the whole text", () => {
    expect(classifySync("SELECT 1; SELEC 2").statements).toEqual([]);
  });
  it("deep nesting fails cleanly and the parser keeps working", () => {
    const deep = `SELECT ${"(".repeat(20000)}1${")".repeat(20000)}`;
    expect(classifySync(deep).errors.length).toBe(1);
    expect(kinds("SELECT 1")).toEqual(["select"]);
  });
  it("classify() loads the parser itself", async () => {
    expect((await classify("select 1")).statements[0]?.kind).toBe("select");
  });
});

describe("cache", () => {
  it("returns the same frozen result for the same text", () => {
    const text = `SELECT 'x${Math.random()}'`;
    const before = classificationCacheStats().hits;
    const a = classifySync(text);
    const b = classifySync(text);
    expect(b).toBe(a);
    expect(Object.isFrozen(a.statements[0])).toBe(true);
    expect(classificationCacheStats().hits).toBe(before + 1);
  });
  it("LRU evicts the least recently used entry", () => {
    const lru = new Lru<string, number>(2);
    lru.set("a", 1);
    lru.set("b", 2);
    lru.get("a");
    lru.set("c", 3);
    expect(lru.get("b")).toBeUndefined();
    expect(lru.get("a")).toBe(1);
    expect(lru.get("c")).toBe(3);
  });
});

describe("numeric shape cache", () => {
  it.each([
    ["SELECT * FROM t WHERE id = 17", "SELECT * FROM t WHERE id = \0"],
    ["SELECT 1.5e3, .5, -2, 2147483648", "SELECT \u0002, \u0002, -\0, \u0001"],
    ["SELECT 1_000", undefined],
    ["SELECT t1.a2 FROM t1 WHERE x = $1", undefined],
    ["SELECT 'a 1', E'\\'' || 2, \"col 3\"", "SELECT 'a 1', E'\\'' || \0, \"col 3\""],
    ["SELECT $$ 1 $$, $a$ 2 $a$, 3", "SELECT $$ 1 $$, $a$ 2 $a$, \0"],
    ["SELECT 1 -- 2\n, 3 /* 4 /* 5 */ 6 */", "SELECT \0 -- 2\n, \0 /* 4 /* 5 */ 6 */"],
    ["SELECT 0x1F, 12abc, a$1", undefined],
    ["SELECT 'unterminated 1", undefined],
    ["SELECT 1 /* unterminated", undefined],
  ])("%j → %j", (sql, shape) => {
    expect(numericShape(sql)?.key).toBe(shape);
  });

  it("shares classifications between texts that differ only in numbers", () => {
    const before = classificationCacheStats().shapeHits;
    const a = classifySync("SELECT abalance FROM pgbench_accounts WHERE aid = 12345");
    const b = classifySync("SELECT abalance FROM pgbench_accounts WHERE aid = 678");
    expect(b).toBe(a);
    expect(classificationCacheStats().shapeHits).toBe(before + 1);
  });

  it("never shares across identifiers, strings or literal-dependent decisions", () => {
    expect(classifySync('SELECT * FROM "1" WHERE a = 1').statements[0]?.tables).toEqual(['"1"']);
    expect(classifySync('SELECT * FROM "2" WHERE a = 1').statements[0]?.tables).toEqual(['"2"']);
    const explain = (n: number) =>
      kinds(`EXPLAIN (ANALYZE ${n}) WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d`);
    expect(explain(0)).toEqual(["explain"]);
    expect(explain(1)).toEqual(["select", "delete"]);
    expect(explain(0)).toEqual(["explain"]);
    expect(classifySync("SELECT 1 FROM t1").statements[0]?.tables).toEqual(["t1"]);
    expect(classifySync("SELECT 1 FROM t2").statements[0]?.tables).toEqual(["t2"]);
    expect(numericShape("SELECT E'\\' 1' FROM t3")).toBeUndefined();
    expect(classifySync("SELECT E'\\' 1' FROM t3").statements[0]?.tables).toEqual(["t3"]);
  });
});

describe("what the catalog judgement needs", () => {
  const first = (sql: string) => classifySync(sql).statements[0];

  it("calls with schema and argument count, as PostgreSQL matches them", () => {
    expect(first("SELECT s.f(1, 2), count(*), g(a => 1), h(VARIADIC ARRAY[1]), k()")?.routines).toEqual([
      { schema: "s", name: "f", args: 2 },
      { name: "count", args: 0 },
      { name: "g" },
      { name: "h" },
      { name: "k", args: 0 },
    ]);
    expect(first("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM t")?.routines).toEqual([
      { name: "percentile_cont", args: 2 },
    ]);
    expect(first("SELECT * FROM f(1) WHERE g(x) ORDER BY h(y, z)")?.routines.map((r) => r.name)).toEqual([
      "f",
      "g",
      "h",
    ]);
  });

  it("operators written and implied, and casts", () => {
    expect(first("SELECT 2 ## 3, a OPERATOR(s.##) b, x BETWEEN 1 AND 2, y LIKE 'a'")?.operators).toEqual([
      { name: "##" },
      { schema: "s", name: "##" },
      { name: ">=" },
      { name: "<=" },
      { name: "~~" },
    ]);
    expect(first("SELECT 1 = ANY (SELECT 1)")?.operators).toEqual([{ name: "=" }]);
    expect(first("SELECT x::public.d, CAST(y AS e)")?.casts).toEqual([
      { schema: "public", name: "d" },
      { name: "e" },
    ]);
  });

  it("two-phase commit is its own kind", () => {
    expect(kinds("PREPARE TRANSACTION 'x'")).toEqual(["twoPhaseCommit"]);
    expect(kinds("COMMIT PREPARED 'x'")).toEqual(["twoPhaseCommit"]);
    expect(kinds("ROLLBACK PREPARED 'x'")).toEqual(["twoPhaseCommit"]);
    expect(kinds("COMMIT")).toEqual(["transaction"]);
  });

  it("flags custom settings changed by SET, RESET, set_config and ALTER ROLE", () => {
    expect(first("SET app.tenant = 'globex'")?.customSettings).toEqual(["app.tenant"]);
    expect(first("SET LOCAL App.Tenant TO 'x'")?.customSettings).toEqual(["app.tenant"]);
    expect(first("RESET app.tenant")?.customSettings).toEqual(["app.tenant"]);
    expect(first("SELECT set_config('app.tenant', 'x', false)")?.customSettings).toEqual(["app.tenant"]);
    expect(first("SELECT set_config(name, 'x', false) FROM t")?.customSettings).toEqual(["(dynamic)"]);
    expect(first("ALTER ROLE bob SET app.tenant = 'x'")?.customSettings).toEqual(["app.tenant"]);
    expect(first("SET work_mem = '4MB'")?.customSettings).toBeUndefined();
    expect(first("SHOW app.tenant")?.customSettings).toBeUndefined();
  });

  it("FETCH, MOVE and CLOSE name their cursor", () => {
    expect(first("FETCH 10 FROM c")?.effect).toEqual({ kind: "fetch", name: "c" });
    expect(first("MOVE BACKWARD ALL IN c")?.effect).toEqual({ kind: "fetch", name: "c" });
    expect(first("CLOSE c")?.effect).toEqual({ kind: "closeCursor", name: "c" });
    expect(first("CLOSE ALL")?.effect).toEqual({ kind: "closeCursor" });
  });
});
