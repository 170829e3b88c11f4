import { describe, expect, it } from "vitest";
import { parseAbsoluteForm, parseAuthority, parseOriginForm, TargetError } from "./target.ts";

describe("request targets", () => {
  it("parses authorities, lower-casing hosts", () => {
    expect(parseAuthority("API.Example.com:443")).toEqual({ host: "api.example.com", port: 443 });
    expect(parseAuthority("[::1]:8443")).toEqual({ host: "::1", port: 8443 });
    expect(parseAuthority("example.com", 80)).toEqual({ host: "example.com", port: 80 });
  });

  it.each([
    "example.com",
    "user:pw@example.com:443",
    "example.com:0",
    "example.com:99999",
    "[::1",
    "exa mple.com:1",
    "",
  ])("refuses the authority %j without a default port", (a) => {
    expect(() => parseAuthority(a)).toThrow(TargetError);
  });

  it("parses absolute-form targets without normalizing the path", () => {
    expect(parseAbsoluteForm("http://h.test:8080/a/../b?x=1")).toEqual({
      scheme: "http",
      host: "h.test",
      port: 8080,
      pathAndQuery: "/a/../b?x=1",
    });
    expect(parseAbsoluteForm("https://h.test")).toMatchObject({ port: 443, pathAndQuery: "/" });
    expect(parseAbsoluteForm("HTTP://h.test?q")).toMatchObject({
      scheme: "http",
      port: 80,
      pathAndQuery: "/?q",
    });
    expect(() => parseAbsoluteForm("ftp://h.test/")).toThrow(TargetError);
    expect(() => parseAbsoluteForm("http://u:p@h.test/")).toThrow(TargetError);
  });

  it("accepts only origin-form on connection listeners", () => {
    expect(parseOriginForm("/a?b=c")).toEqual({ path: "/a", query: "?b=c" });
    expect(() => parseOriginForm("*")).toThrow(TargetError);
    expect(() => parseOriginForm("http://x/")).toThrow(TargetError);
  });
});
