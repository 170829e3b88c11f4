import { describe, expect, it } from "vitest";
import { compileNameGlob, compilePathGlob } from "./glob.ts";

describe("path globs", () => {
  it.each([
    ["/customers", "/customers", true],
    ["/customers", "/customers/1", false],
    ["/customers/*", "/customers/1", true],
    ["/customers/*", "/customers/1/orders", false],
    ["/customers/*", "/customers", false],
    ["/customers/**", "/customers", true],
    ["/customers/**", "/customers/1/orders", true],
    ["/customers/**", "/customersX", false],
    ["/api/*/close", "/api/7/close", true],
    ["/api/**/close", "/api/a/b/close", true],
    ["/api/**/close", "/api/close", true],
    ["/v1/*.json", "/v1/a.json", true],
    ["/v1/*.json", "/v1/aXjson", false],
    ["/", "/", true],
    ["/", "/a", false],
    ["/**", "/anything/at/all", true],
  ])("%s vs %s → %s", (glob, path, expected) => {
    expect(compilePathGlob(glob)(path)).toBe(expected);
  });
});

describe("name globs", () => {
  it("match literally except *", () => {
    expect(compileNameGlob("pg_*")("pg_read_file")).toBe(true);
    expect(compileNameGlob("pg_*")("xpg_read")).toBe(false);
    expect(compileNameGlob("a.b")("aXb")).toBe(false);
    expect(compileNameGlob("Orders", true)("orders")).toBe(true);
  });
});
