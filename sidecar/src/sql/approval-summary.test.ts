import { beforeAll, describe, expect, it } from "vitest";
import { approvalSummary, elide } from "./approval-summary.ts";
import { classifySync, loadSqlParser } from "./classify.ts";

beforeAll(() => loadSqlParser());

const summarize = (text: string, opts = {}) => approvalSummary(text, classifySync(text), opts);

describe("approval summary", () => {
  it("shows a write hidden behind a huge comment: its kind, table and text", () => {
    const text = `SELECT 1; /* ${"x".repeat(1 << 20)} */ DELETE FROM orders WHERE id = 4`;
    const s = summarize(text);
    expect(s.statements.map((x) => x.kinds)).toEqual([["select"], ["delete"]]);
    expect(s.statements[1]?.tables).toEqual(["orders"]);
    expect(s.statements[1]?.excerpt).toBe("DELETE FROM orders WHERE id = 4");
    expect(s.text.length).toBeLessThan(4200);
    expect(s.text).toMatch(/^SELECT 1; \/\* x+/);
    expect(s.text).toMatch(/DELETE FROM orders WHERE id = 4$/);
    expect(s.text).toMatch(/\[\d+ characters elided: comments or whitespace between statements\]/);
    const long = summarize(`SELECT 1; DELETE FROM orders WHERE id IN (${"1,".repeat(5000)}2)`);
    expect(long.text).toMatch(/\[\d+ characters elided: statement 2: delete\]/);
  });

  it("lists every write however many reads come first, and counts the reads it leaves out", () => {
    const text = `${"SELECT 1; ".repeat(200)}UPDATE accounts SET balance = 0; ${"SELECT 2; ".repeat(10)}`;
    const s = summarize(text, { maxStatements: 5 });
    expect(s.statements.filter((x) => x.kinds.includes("update")).map((x) => x.position)).toEqual([201]);
    expect(s.statements).toHaveLength(6);
    expect(s.omittedReads).toBe(205);
  });

  it("folds nested entries into their statement, with fingerprints and functions", () => {
    const s = summarize("WITH d AS (DELETE FROM a RETURNING *) SELECT lower(x) FROM d");
    expect(s.statements).toHaveLength(1);
    expect(s.statements[0]?.kinds).toEqual(["select", "delete"]);
    expect(s.statements[0]?.functions).toEqual(["lower"]);
    expect(s.statements[0]?.fingerprint).toMatch(/^[0-9a-f]{16}$/);
  });

  it("keeps a long statement's head and tail", () => {
    const s = summarize(
      `DELETE FROM orders WHERE id IN (${Array.from({ length: 2000 }, (_, i) => i).join(",")})`,
    );
    expect(s.statements[0]?.excerpt).toMatch(
      /^DELETE FROM orders WHERE id IN \(0,1,2.* … \[\d+ characters elided\] … .*1999\)$/,
    );
  });

  it("elide leaves short text alone", () => {
    expect(elide("abc", 10)).toBe("abc");
    expect(elide("a".repeat(100), 40).length).toBeLessThanOrEqual(40);
  });
});
