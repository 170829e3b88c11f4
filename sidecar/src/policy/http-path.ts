// Normalizes a request path the way a decoding upstream would read it, so that a rule about
// `/admin/**` cannot be dodged with `/api/../admin`, `/%61dmin`, `//admin` or `/api/..;/admin`.
// The sidecar matches rules against this form AND forwards this form, so what was decided is
// what the upstream gets.
//
// Rules: percent-escapes are decoded once (an encoded slash becomes a separator); `.` and `..`
// segments are resolved (`..` above the root stays at the root); empty segments collapse; a
// trailing slash is kept for forwarding and ignored for matching.
// Refused outright (fail closed): backslashes, NUL and control characters, malformed escapes,
// and double-encoding (`%25` followed by two hex digits), which some upstreams decode twice.
//
// Upstreams disagree on two more things: case (IIS, Spring with case-insensitive matching, many
// file servers) and `;` path parameters (Tomcat, Jetty and Spring strip `;jsessionid=…` from each
// segment before routing). So rules that restrict (deny, requireApproval) match the loosest reading
// — case-insensitive, with `;…` cut from every segment (`looseMatchPath`) — and allow rules match the
// exact form: `/ADMIN/x` and `/admin;x=1/k` are denied by a deny on `/admin/**`, and allowed only by
// an allow rule written for that exact spelling. Either way the upstream gets `forward`, the form
// that was matched. (Envoy's normalize_path / merge_slashes / path_with_escaped_slashes_action and
// Istio's pathNormalization BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES cover the first
// paragraph; neither folds case nor strips `;` parameters, see the README.)

export class PathError extends Error {}

export interface NormalizedPath {
  /** What rules match against: no trailing slash (except the root). */
  match: string;
  /** What is forwarded upstream: normalized, re-encoded, trailing slash preserved. */
  forward: string;
}

const SEGMENT_SAFE = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]$/;

function encodeSegment(segment: string): string {
  let out = "";
  for (const ch of segment) {
    if (SEGMENT_SAFE.test(ch)) out += ch;
    else
      for (const byte of Buffer.from(ch, "utf8"))
        out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function decode(raw: string): string {
  if (/%25[0-9a-fA-F]{2}/.test(raw)) throw new PathError("double-encoded path refused");
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    throw new PathError("malformed percent-encoding in path");
  }
  if (decoded.includes("\\") || [...decoded].some((c) => c <= "\u001f" || c === "\u007f")) {
    throw new PathError("backslash or control character in path refused");
  }
  return decoded;
}

/** A `..;params` or `.;params` segment is a dot segment to Tomcat-style servers: treat it as one. */
const bare = (segment: string) => segment.split(";", 1)[0];

// A path already in normal form: non-empty segments of characters forwarded as they are (no `%`,
// no `;`), none of them `.` or `..`, maybe a trailing slash. Normalizing it changes nothing, so
// the common request skips the decode, split and re-encode below (same answer: http-path.test.ts).
const NORMAL_PATH = /^(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9\-._~!$&'()*+,=:@]+)+\/?$/;

export function normalizePath(rawPath: string): NormalizedPath {
  if (NORMAL_PATH.test(rawPath))
    return { match: rawPath.endsWith("/") ? rawPath.slice(0, -1) : rawPath, forward: rawPath };
  return normalizeAnyPath(rawPath);
}

/** normalizePath without the shortcut for paths already in normal form (exported for its test). */
export function normalizeAnyPath(rawPath: string): NormalizedPath {
  if (!rawPath.startsWith("/")) throw new PathError("path must start with /");
  const decoded = decode(rawPath);
  const stack: string[] = [];
  for (const segment of decoded.split("/")) {
    const b = bare(segment);
    if (segment === "" || b === ".") continue;
    if (b === "..") stack.pop();
    else stack.push(segment);
  }
  const trailing = decoded.length > 1 && decoded.endsWith("/") && stack.length > 0;
  const match = `/${stack.join("/")}`;
  const forward = `/${stack.map(encodeSegment).join("/")}${trailing ? "/" : ""}`;
  return { match, forward };
}

/**
 * The loosest reading of a normalized match path, for restrictive rules: `;params` cut from every
 * segment and the empty segments that leaves collapsed (case is folded by the matcher).
 */
export function looseMatchPath(match: string): string {
  if (!match.includes(";")) return match;
  const segments = match
    .split("/")
    .map((s) => s.split(";", 1)[0] as string)
    .filter((s) => s !== "");
  return `/${segments.join("/")}`;
}

/** Splits a request target into path and query; the query is forwarded untouched. */
export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf("?");
  return q < 0 ? { path: target, query: "" } : { path: target.slice(0, q), query: target.slice(q) };
}
