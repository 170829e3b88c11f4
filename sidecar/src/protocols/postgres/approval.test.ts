import { beforeAll, describe, expect, it } from "vitest";
import { loadSqlParser } from "../../sql/index.ts";
import { approvalSummary } from "./approval.ts";

beforeAll(() => loadSqlParser());

describe("what an approver sees of a SQL text", () => {
  it("one short statement: the normalized text (literals become $n)", () => {
    expect(approvalSummary("DELETE FROM orders WHERE id = 4")).toBe("DELETE FROM orders WHERE id = $1");
  });

  it("a write behind a long comment and a harmless statement is listed first, with its table", () => {
    const text = `SELECT 1; /* ${"x".repeat(1 << 20)} */ DELETE FROM orders WHERE id = 4`;
    const s = approvalSummary(text) ?? "";
    expect(s.length).toBeLessThan(6000);
    const [head, first, second] = s.split("\n");
    expect(head).toBe("2 statements (1 not plain reads):");
    expect(first).toMatch(/^1\. SELECT/);
    expect(second).toMatch(/^2\. DELETE orders \[[^\]]+\]: DELETE FROM orders WHERE id = \$\d+$/);
    expect(s).toMatch(/characters elided/);
    expect(s).not.toMatch(/id = 4/);
  });

  it("every write is listed whatever the number of reads", () => {
    const text = `${Array.from({ length: 80 }, (_, i) => `SELECT ${i}`).join("; ")}; UPDATE t SET a = 1`;
    const s = approvalSummary(text) ?? "";
    expect(s.split("\n")[0]).toMatch(/^81 statements \(1 not plain reads, \d+ reads not listed\):/);
    expect(s).toMatch(/^81\. UPDATE t /m);
  });
});
