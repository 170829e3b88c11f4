import { beforeAll, describe, expect, it } from "vitest";
import { loadSqlParser } from "../../sql/index.ts";
import { approvalReason, approvalSummary } from "./approval.ts";

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

  it.each([
    [
      "a carriage return that ends a -- comment",
      "DELETE FROM orders WHERE id = 1 -- keep the rest\r OR true",
      "\\u{D}",
    ],
    ["a bidi override", "DELETE FROM orders WHERE id = 1 /* \u202E eurt RO */ OR true", "\\u{202E}"],
    ["a zero-width space", "DELETE FROM orders WHERE id = 1 /* \u200B */ OR true", "\\u{200B}"],
    ["a line separator", "DELETE FROM orders WHERE id = 1 -- \u2028 OR true", "\\u{2028}"],
  ])("characters a display hides or reinterprets are written out: %s", (_why, text, shown) => {
    const s = approvalSummary(text) ?? "";
    expect(s).toContain(shown);
    expect(s).not.toMatch(/[\r\u202E\u200B\u2028]/);
    expect(approvalReason(`-- approve me\u202E ${text}`)).not.toMatch(/\u202E/);
  });
});
