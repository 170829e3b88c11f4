// Passwords in URL userinfo: scheme://user:password@host. Only the password is masked, so the
// agent still sees which account and host a connection string names.
import { isAlnum, isAsciiLetter, pendingToken } from "./chars.ts";
import type { Detector, Finding } from "./types.ts";

const MAX_SCHEME = 32;
const MAX_AUTHORITY = 1024;

function isSchemeChar(c: number): boolean {
  return isAlnum(c) || c === 43 || c === 45 || c === 46; // + - .
}

// Where the authority ends: path, query, fragment, whitespace, quotes, angle brackets, backslash
// (escaped JSON), backtick.
function endsAuthority(c: number): boolean {
  return (
    c <= 32 ||
    c === 47 ||
    c === 63 ||
    c === 35 ||
    c === 34 ||
    c === 39 ||
    c === 60 ||
    c === 62 ||
    c === 92 ||
    c === 96
  );
}

export const urlCredentials: Detector = {
  id: "urlCredentials",
  maxLength: MAX_SCHEME + 3 + MAX_AUTHORITY,
  keywords: ["://"],
  lookBehind: 0,
  pendingFrom: pendingToken,
  find(text) {
    const out: Finding[] = [];
    let from = 0;
    for (let sep = text.indexOf("://", from); sep >= 0; sep = text.indexOf("://", from)) {
      from = sep + 3;
      let s = sep;
      while (s > 0 && sep - s < MAX_SCHEME && isSchemeChar(text.charCodeAt(s - 1))) s--;
      if (s === sep || !isAsciiLetter(text.charCodeAt(s))) continue;
      const authStart = sep + 3;
      let authEnd = authStart;
      while (
        authEnd < text.length &&
        authEnd - authStart < MAX_AUTHORITY &&
        !endsAuthority(text.charCodeAt(authEnd))
      )
        authEnd++;
      // The last "@" ends the userinfo (how WHATWG URL parses an unescaped "@" in a password).
      // Both searches stay inside the authority: indexOf/lastIndexOf would run on through the
      // whole text for every "://" and make the scan quadratic.
      let at = authEnd - 1;
      while (at >= authStart && text.charCodeAt(at) !== 64) at--;
      if (at < authStart) continue;
      let colon = authStart;
      while (colon < at && text.charCodeAt(colon) !== 58) colon++;
      if (colon >= at - 1) continue;
      out.push({ start: colon + 1, end: at, detector: "urlCredentials" });
      from = Math.max(from, at + 1);
    }
    return out;
  },
};
