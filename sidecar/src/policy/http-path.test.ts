import { describe, expect, it } from "vitest";
import { looseMatchPath, normalizeAnyPath, normalizePath, PathError, splitTarget } from "./http-path.ts";

describe("normalizePath", () => {
  it.each([
    ["/", "/", "/"],
    ["/customers", "/customers", "/customers"],
    ["/customers/", "/customers", "/customers/"],
    ["//admin", "/admin", "/admin"],
    ["/api/../admin", "/admin", "/admin"],
    ["/api/./v1/../../admin/", "/admin", "/admin/"],
    ["/../../admin", "/admin", "/admin"],
    ["/%61dmin", "/admin", "/admin"],
    ["/api%2F..%2Fadmin", "/admin", "/admin"],
    ["/api/%2e%2e/admin", "/admin", "/admin"],
    ["/api/..;/admin", "/admin", "/admin"],
    ["/api/.;x/users", "/api/users", "/api/users"],
    ["/files/a%20b", "/files/a b", "/files/a%20b"],
    ["/Admin", "/Admin", "/Admin"],
    ["/caf%C3%A9", "/café", "/caf%C3%A9"],
  ])("%s → match %s, forward %s", (raw, match, forward) => {
    expect(normalizePath(raw)).toEqual({ match, forward });
  });

  it.each([
    ["/api/%252e%252e/admin", "double-encoded"],
    ["/api\\..\\admin", "backslash"],
    ["/api/%5c../admin", "backslash"],
    ["/a%00b", "control"],
    ["/a%zz", "malformed"],
    ["/a%C3", "malformed"],
    ["admin", "must start"],
  ])("refuses %s", (raw, why) => {
    expect(() => normalizePath(raw)).toThrow(PathError);
    expect(() => normalizePath(raw)).toThrow(new RegExp(why));
  });

  it("splits the query off untouched", () => {
    expect(splitTarget("/a/b?x=%2F..&y")).toEqual({ path: "/a/b", query: "?x=%2F..&y" });
    expect(splitTarget("/a")).toEqual({ path: "/a", query: "" });
  });
});

describe("looseMatchPath", () => {
  it.each([
    ["/admin", "/admin"],
    ["/admin;x=1/k", "/admin/k"],
    ["/admin;/k", "/admin/k"],
    ["/;x/admin", "/admin"],
    ["/a;b;c/d;e", "/a/d"],
    ["/", "/"],
  ])("%s → %s", (path, loose) => {
    expect(looseMatchPath(path)).toBe(loose);
  });
});

describe("normalizePath's shortcut for paths already in normal form", () => {
  // Paths from an alphabet of the characters that decide normalization (dots, slashes, `;`,
  // escapes, backslash, a control character, non-ASCII): the shortcut must answer as the
  // general path does, refusals included.
  const pieces = [
    "/",
    "a",
    "B",
    ".",
    "..",
    ";x",
    "%2F",
    "%41",
    "%25",
    "%",
    "\\",
    "\u0001",
    "é",
    "~",
    "@",
    "-",
  ];
  const answer = (f: (p: string) => unknown, p: string) => {
    try {
      return f(p);
    } catch (err) {
      return err instanceof PathError ? `refused: ${err.message}` : err;
    }
  };
  it("answers as the general normalization on 20,000 generated paths", () => {
    let seed = 7;
    const next = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed;
    };
    for (let n = 0; n < 20_000; n++) {
      let p = "/";
      const len = next() % 8;
      for (let i = 0; i < len; i++) p += pieces[next() % pieces.length];
      expect(answer(normalizePath, p), p).toEqual(answer(normalizeAnyPath, p));
    }
  });
  it.each(["/customers", "/customers/1/", "/a/.../b", "/.well-known/x", "/a..b/c.", "/x/..y"])("%s", (p) => {
    expect(normalizePath(p)).toEqual(normalizeAnyPath(p));
  });
});
