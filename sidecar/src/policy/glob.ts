// Globs. Path globs: `*` matches within one segment, a `**` segment matches any number of
// segments including none (so `/a/**` matches `/a`, `/a/b/c`). Name globs (tables, functions,
// commands): `*` matches anything. Everything else is literal.

export type Matcher = (value: string) => boolean;

const escapeRegex = (s: string) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&");

export function compilePathGlob(glob: string, caseInsensitive = false): Matcher {
  if (glob === "/") return (v) => v === "/";
  const segments = glob.split("/").slice(1);
  const re = segments
    .map((seg) => (seg === "**" ? "(?:/[^/]*)*" : `/${seg.split("*").map(escapeRegex).join("[^/]*")}`))
    .join("");
  const regex = new RegExp(`^${re}$`, caseInsensitive ? "is" : "s");
  return (value) => regex.test(value);
}

export function compileNameGlob(glob: string, caseInsensitive = false): Matcher {
  const regex = new RegExp(`^${glob.split("*").map(escapeRegex).join(".*")}$`, caseInsensitive ? "is" : "s");
  return (value) => regex.test(value);
}

/** Any of the globs; undefined when there are none (the rule does not constrain this dimension). */
export function anyOf(
  globs: readonly string[] | undefined,
  compile: (g: string) => Matcher,
): Matcher | undefined {
  if (!globs || globs.length === 0) return undefined;
  const matchers = globs.map(compile);
  return (value) => matchers.some((m) => m(value));
}

/** URI globs (MCP resources): `**` matches anything, `*` anything but `/`. Case-sensitive. */
export function compileUriGlob(glob: string): Matcher {
  const re = glob
    .split("**")
    .map((part) => part.split("*").map(escapeRegex).join("[^/]*"))
    .join(".*");
  const regex = new RegExp(`^${re}$`, "s");
  return (value) => regex.test(value);
}
