import { describe, expect, it } from "vitest";
import { hasInexactNumber, isRawJson, parseJsonLossless } from "./json.ts";

// The reviver path on its own: what parseJsonLossless must answer whichever path it takes.
const J = JSON as unknown as {
  parse(t: string, r: (k: string, v: unknown, c?: { source?: string }) => unknown): unknown;
  rawJSON(t: string): unknown;
};
const reference = (text: string) =>
  J.parse(text, (_k, v, c) =>
    typeof v === "number" && c?.source !== undefined && String(v) !== c.source ? J.rawJSON(c.source) : v,
  );

describe("parseJsonLossless", () => {
  it("takes the plain parser only when every number token is an integer of at most 15 digits", () => {
    for (const t of ['{"a":1,"b":[-2,0,123456789012345]}', '{"n":"1.5e3 -0 12345678901234567"}', "[]"])
      expect(hasInexactNumber(t)).toBe(false);
    for (const t of ["[1.5]", "[1e5]", "[2E1]", "[-0]", "[1234567890123456]", '{"a\\"":4111111111111111}'])
      expect(hasInexactNumber(t)).toBe(true);
  });

  it("answers as the reviver does, numbers in strings, escapes and long digit runs included", () => {
    const cases = [
      '{"card":4111111111111111,"id":7}',
      '{"s":"\\"","n":12345678901234567890}',
      '{"a":[1.0,-0,1e2,0.10],"b":"4111111111111111"}',
      '{"k\\\\":5,"v":[-12,{"x":100000000000000}]}',
      '"4111.1"',
      "-0.5",
      "[true,false,null,10]",
    ];
    for (const t of cases) expect(JSON.stringify(parseJsonLossless(t))).toBe(JSON.stringify(reference(t)));
    const parsed = parseJsonLossless('{"card":4111111111111111111}') as { card: unknown };
    expect(isRawJson(parsed.card)).toBe(true);
  });

  it("throws on invalid JSON on either path", () => {
    for (const t of ["{", "[1,]", '{"a":01}', "[1.5,]"])
      expect(() => parseJsonLossless(t)).toThrow(SyntaxError);
  });
});
