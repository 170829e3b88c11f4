import { describe, expect, it } from "vitest";
import { IdentityError } from "./errors.ts";
import { MAX_TOKEN_LENGTH } from "./oidc.ts";
import { extractIdentityToken } from "./request-token.ts";

const JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";

describe("extractIdentityToken", () => {
  it.each<[string | string[] | undefined, string | undefined]>([
    [undefined, undefined],
    ["", undefined],
    ["   ", undefined],
    [[], undefined],
    [`Bearer ${JWT}`, JWT],
    [`bearer \t ${JWT}`, JWT],
    [`BEARER ${JWT}  `, JWT],
    [JWT, JWT],
    [[`Bearer ${JWT}`], JWT],
  ])("%j → %j", (value, expected) => {
    expect(extractIdentityToken(value)).toBe(expected);
  });

  it.each<[string, string | string[]]>([
    ["repeated headers", [`Bearer ${JWT}`, `Bearer ${JWT}`]],
    ["joined duplicates", `Bearer ${JWT}, Bearer ${JWT}`],
    ["another scheme", "Basic dXNlcjpwYXNz"],
    ["a bare scheme", "Bearer"],
    ["not a JWT", "Bearer hello"],
    ["quotes", `Bearer "${JWT}"`],
    ["oversized", `Bearer ${"a".repeat(MAX_TOKEN_LENGTH + 100)}.b.c`],
  ])("rejects %s as malformed", (_name, value) => {
    expect(() => extractIdentityToken(value)).toThrowError(IdentityError);
    expect(() => extractIdentityToken(value)).toThrowError(expect.objectContaining({ code: "malformed" }));
  });
});
