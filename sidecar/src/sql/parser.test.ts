import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { splitScript } from "../../../test/postgres/regress/split.ts";
import { classifyFresh, classifySync, loadSqlParser } from "./classify.ts";
import { parserFor, SUPPORTED_MAJORS, serverMajor, UnsupportedServerError } from "./parser.ts";

beforeAll(() => loadSqlParser());

describe("parser matching the server's major", () => {
  it.each([
    ["15.18 (Debian 15.18-0+deb12u1)", 15],
    ["16.4", 16],
    ["17beta2", 17],
    ["18.1", 18],
    ["9.6.24", undefined],
    ["banana", undefined],
  ])("server_version %j → major %j", (v, major) => {
    expect(serverMajor(v)).toBe(major);
  });

  it("fails closed for a server without a parser", async () => {
    expect(SUPPORTED_MAJORS).toEqual([15, 16, 17, 18]);
    await expect(parserFor("14.11")).rejects.toBeInstanceOf(UnsupportedServerError);
    await expect(parserFor("19devel")).rejects.toThrow(/supports majors 15, 16, 17, 18/);
    await expect(parserFor("")).rejects.toBeInstanceOf(UnsupportedServerError);
  });

  it("judges with the server's grammar: `1_000` is one number on 16+, a number and an alias on 15", async () => {
    const pg15 = await parserFor("15.18");
    const pg16 = await parserFor("16.4");
    expect(pg15.major).toBe(15);
    expect(await parserFor("15.2")).toBe(pg15);
    const tree = (p: { parseSync(t: string): unknown }) => JSON.stringify(p.parseSync("SELECT 1_000"));
    expect(tree(pg15)).toContain('"name":"_000"');
    expect(tree(pg16)).not.toContain("_000");
    // Classifications are cached per grammar.
    const on15 = classifySync("SELECT 1 FROM t", pg15);
    expect(on15).not.toBe(classifySync("SELECT 1 FROM t"));
    expect(on15.statements[0]?.tables).toEqual(["t"]);
  });

  it("classifies PostgreSQL's regression SQL alike with the 15 and 18 grammars, but for SYSTEM_USER", async () => {
    const pg15 = await parserFor("15.18");
    const dir = join(import.meta.dirname, "../../../test/postgres/regress/sql");
    let both = 0;
    const differ: string[] = [];
    for (const file of [
      "select.sql",
      "insert.sql",
      "update.sql",
      "create_view.sql",
      "rules.sql",
      "with.sql",
    ]) {
      const script = readFileSync(join(dir, file), "utf8");
      for (const { sql } of splitScript(script, (s) => classifyFresh(s).errors.length === 0)) {
        const a = classifyFresh(sql, pg15);
        const b = classifyFresh(sql);
        if (a.errors.length || b.errors.length) continue;
        both++;
        const facts = (c: typeof a) =>
          JSON.stringify(c.statements.map(({ fingerprint: _f, ...rest }) => rest));
        if (facts(a) !== facts(b)) differ.push(sql);
      }
    }
    expect(both).toBeGreaterThan(1500);
    // The one difference: SYSTEM_USER became a keyword in 16. On a 15 server `FROM system_user`
    // reads a table of that name, which 18's grammar would hide from the table rules.
    expect(differ).toHaveLength(1);
    expect(differ[0]).toContain("create view tt201v");
    const view = differ[0] ?? "";
    expect(classifyFresh(view, pg15).statements[0]?.tables).toContain("system_user");
    expect(classifyFresh(view).statements[0]?.tables).not.toContain("system_user");
  });
});
