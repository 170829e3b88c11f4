import { describe, expect, it } from "vitest";
import { compilePaths, formatPath, JsonPathError, type PathKey, parseJsonPath } from "./json-path.ts";

/** Does `pattern` select the node at `path`? Walks the NFA the way the masker does. */
function selects(pattern: string, path: PathKey[]): boolean {
  const set = compilePaths([parseJsonPath(pattern)]);
  let states = set.root;
  for (const k of path) states = set.step(states, k);
  return set.matched(states) === 0;
}

describe("JSON path matching", () => {
  it.each<[string, PathKey[], boolean]>([
    ["$", [], true],
    ["$", ["a"], false],
    ["$.user.email", ["user", "email"], true],
    ["$.user.email", ["user"], false],
    ["$.user.email", ["user", "email", "x"], false],
    ["$.user.email", ["account", "email"], false],
    ["$['user']['e-mail']", ["user", "e-mail"], true],
    ['$["a.b"]', ["a.b"], true],
    ["$.items[*].ssn", ["items", 0, "ssn"], true],
    ["$.items[*].ssn", ["items", 12, "ssn"], true],
    ["$.items[*].ssn", ["items", "x", "ssn"], true], // [*] is any child, as in JSONPath
    ["$.items[*].ssn", ["items", 0, "name"], false],
    ["$.items[1].ssn", ["items", 1, "ssn"], true],
    ["$.items[1].ssn", ["items", 0, "ssn"], false],
    ["$.items.*", ["items", 3], true],
    ["$..password", ["password"], true],
    ["$..password", ["a", "b", 0, "password"], true],
    ["$..password", ["a", "password", "b"], false],
    ["$..items[*].ssn", ["x", "items", 0, "ssn"], true],
    ["$..*", ["a", "b"], true],
    ["$.a..b", ["a", "x", "y", "b"], true],
    ["$.a..b", ["c", "x", "b"], false],
    ["$.user-name", ["user-name"], true],
  ])("%s selects %j: %s", (pattern, path, expected) => {
    expect(selects(pattern, path)).toBe(expected);
  });

  it("reports the first of several paths that matches", () => {
    const set = compilePaths(["$.a", "$..b", "$.a"].map(parseJsonPath));
    expect(set.matched(set.step(set.root, "a"))).toBe(0);
    expect(set.matched(set.step(set.step(set.root, "a"), "b"))).toBe(1);
    expect(set.matched(set.step(set.root, "c"))).toBe(-1);
  });

  it.each(["user.email", "$.", "$.a[", "$.a['x", "$.a[-1]", "$ .a", "$.a[x]", "$[01a]"])(
    "rejects %j",
    (p) => {
      expect(() => parseJsonPath(p)).toThrow(JsonPathError);
    },
  );
});

describe("formatPath", () => {
  it.each<[PathKey[], string]>([
    [[], "$"],
    [["a", 0, "b"], "$.a[0].b"],
    [["x-y", "ok_1", "$v"], "$['x-y'].ok_1.$v"],
    [["it's", "back\\slash", ""], "$['it\\'s']['back\\\\slash']['']"],
  ])("%j → %s", (keys, expected) => {
    expect(formatPath(keys)).toBe(expected);
  });

  it("round-trips through parseJsonPath", () => {
    const keys: PathKey[] = ["it's", 2, "a b", "plain"];
    expect(selects(formatPath(keys), keys)).toBe(true);
  });
});
