// The catalog judgement over a hand-written catalog (the rows catalog.ts's queries return); the
// same judgement against a real PostgreSQL is in test/postgres/catalog.test.ts.
import { beforeAll, describe, expect, it } from "vitest";
import { buildCatalog, type Catalog, type CatalogRow } from "./catalog.ts";
import { classificationCalls, statementCalls, withOpaqueCalls } from "./catalog-judge.ts";
import { classifySync, loadSqlParser } from "./classify.ts";

const fn = (
  oid: number,
  name: string,
  volatility: "i" | "s" | "v",
  extra: Partial<Record<string, unknown>> = {},
): CatalogRow => ({
  oid,
  schema: oid < 16384 ? "pg_catalog" : "public",
  name,
  kind: "f",
  volatility,
  language: oid < 16384 ? "internal" : "plpgsql",
  nargs: 0,
  nargdefaults: 0,
  variadic: "f",
  extension: null,
  body: null,
  support: null,
  types: null,
  ...extra,
});

let catalog: Catalog;

beforeAll(async () => {
  await loadSqlParser();
  catalog = buildCatalog({
    fingerprint: "test",
    functions: [
      fn(1, "now", "s"),
      fn(2, "random", "v"),
      fn(3, "pg_advisory_lock", "v", { nargs: 1 }),
      fn(4, "int4pl", "i", { nargs: 2 }),
      fn(16400, "writer", "v"),
      fn(16401, "reads_writer", "s", { language: "sql", body: "SELECT writer()" }),
      fn(16402, "reads_reads_writer", "s", { language: "sql", body: "select READS_WRITER()" }),
      fn(16403, "harmless", "s", { language: "sql", body: "SELECT now()" }),
      fn(16404, "dynamic", "s", { body: "BEGIN EXECUTE 'select 1'; END" }),
      fn(16405, "py", "i", { language: "plpython3u" }),
      fn(16406, "over", "i", { nargs: 1, schema: "s" }),
      fn(16407, "over", "v", { nargs: 2, schema: "s" }),
      fn(16408, "agg", "i", { kind: "a", nargs: 1, support: "16400,0" }),
      fn(16409, "takes_d", "i", { language: "c", nargs: 1, types: "16500,23" }),
      fn(16410, "opfn", "v", { nargs: 2 }),
      fn(16411, "mentions_view", "s", { language: "sql", body: "SELECT * FROM v_writer" }),
      fn(16412, "mentions_op", "s", { language: "sql", body: "SELECT 1 ## 2" }),
    ],
    operators: [
      { oid: 551, schema: "pg_catalog", name: "+", fn: 4 },
      { oid: 521, schema: "pg_catalog", name: ">", fn: 4 },
      { oid: 16600, schema: "public", name: "##", fn: 16410 },
    ],
    edges: [
      {
        via: "r",
        obj: 16700,
        def: 'CREATE RULE "_RETURN" AS ON SELECT TO v_writer DO INSTEAD SELECT writer() AS w',
        ref: null,
      },
      {
        via: "r",
        obj: 16701,
        def: 'CREATE RULE "_RETURN" AS ON SELECT TO v_view DO INSTEAD SELECT * FROM v_writer',
        ref: null,
      },
      { via: "d", obj: 16702, def: "SELECT writer()", ref: null },
      { via: "D", obj: 16500, def: "SELECT writer() > VALUE", ref: null },
    ],
    objects: [
      { class: "class", oid: 16700, schema: "public", name: "v_writer" },
      { class: "class", oid: 16701, schema: "public", name: "v_view" },
      { class: "class", oid: 16702, schema: "public", name: "defaults" },
      { class: "type", oid: 16500, schema: "public", name: "d" },
    ],
    implicit: [],
  });
});

const opaque = (sql: string) => {
  const c = classifySync(sql);
  return classificationCalls(c, catalog).statements.flatMap((s) => s.opaque.map((o) => o.function));
};

describe("catalog judgement", () => {
  it("VOLATILE off the allow-list is opaque; allow-listed and non-volatile built-ins are not", () => {
    expect(opaque("SELECT now(), random(), 1 + 2")).toEqual([]);
    expect(opaque("SELECT pg_advisory_lock(1)")).toEqual(["pg_catalog.pg_advisory_lock"]);
    expect(opaque("SELECT writer()")).toEqual(["public.writer"]);
  });

  it("non-volatile SQL and PL/pgSQL bodies are opaque when they reach something opaque, transitively", () => {
    expect(opaque("SELECT harmless()")).toEqual([]);
    expect(opaque("SELECT reads_writer()")).toEqual(["public.reads_writer"]);
    expect(opaque("SELECT reads_reads_writer()")).toEqual(["public.reads_reads_writer"]);
    expect(opaque("SELECT dynamic()")).toEqual(["public.dynamic"]);
    expect(opaque("SELECT py()")).toEqual(["public.py"]);
    expect(opaque("SELECT mentions_view()")).toEqual(["public.mentions_view"]);
    expect(opaque("SELECT mentions_op()")).toEqual(["public.mentions_op"]);
    expect(catalog.functions.get(16402)?.opaque).toBe("its body mentions reads_writer, which is opaque");
  });

  it("overloads by schema and argument count; unknown names are opaque", () => {
    expect(opaque("SELECT s.over(1)")).toEqual([]);
    expect(opaque("SELECT s.over(1, 2)")).toEqual(["s.over"]);
    expect(opaque("SELECT over(x => 1)")).toEqual(["s.over"]);
    expect(opaque("SELECT other.over(1)")).toEqual(["other.over"]);
    expect(opaque("SELECT nope()")).toEqual(["nope"]);
  });

  it("views (and views over them), defaults on writes, domains, operators, aggregates, domain arguments", () => {
    expect(opaque("SELECT * FROM v_writer")).toEqual(["public.writer"]);
    expect(opaque("SELECT * FROM public.v_view")).toEqual(["public.writer"]);
    expect(opaque("SELECT * FROM other.v_view")).toEqual([]);
    expect(opaque("SELECT * FROM defaults")).toEqual([]);
    expect(opaque("INSERT INTO defaults DEFAULT VALUES")).toEqual(["public.writer"]);
    expect(opaque("SELECT 1::d")).toEqual(["public.writer"]);
    expect(opaque("SELECT 1 ## 2")).toEqual(["public.opfn"]);
    expect(opaque("SELECT 1 ### 2")).toEqual(["operator ###"]);
    expect(opaque("SELECT agg(x) FROM t")).toEqual(["public.agg"]);
    expect(opaque("SELECT takes_d(1)")).toEqual(["public.takes_d"]);
  });

  it("everything after a statement that may change the catalog is opaque", () => {
    const c = classifySync("SELECT 1; CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'; SELECT 2");
    const calls = classificationCalls(c, catalog);
    expect(calls.statements.map((s) => s.opaque.length)).toEqual([0, 0, 1]);
    expect(calls.statements[2]?.opaque[0]?.via).toBe("catalog-change");
  });

  it("opaque calls become `call` entries beside the statement, for the rules", () => {
    const c = classifySync("SELECT writer() FROM orders");
    const entries = withOpaqueCalls(c, classificationCalls(c, catalog));
    expect(entries.map((e) => [e.kind, e.functions, e.nested])).toEqual([
      ["select", ["writer"], undefined],
      ["call", ["public.writer"], "opaque"],
    ]);
  });

  it("an opaque cast, operator class or type function makes every statement opaque", () => {
    const hazard = buildCatalog({
      fingerprint: "x",
      functions: [fn(16400, "writer", "v")],
      operators: [],
      edges: [],
      objects: [],
      implicit: [{ fn: 16400 }],
    });
    const s = classifySync("SELECT 1").statements[0];
    expect(s && statementCalls(s, hazard).opaque.map((o) => o.via)).toEqual(["implicit"]);
  });
});
