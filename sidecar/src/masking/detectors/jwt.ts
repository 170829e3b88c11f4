// JSON Web Tokens (JWS compact form, and JWE's five segments): base64url segments whose first
// segment decodes to a JSON header with an "alg". A JSON header always starts `{"`, which is
// "eyJ" in base64url, so that literal anchors the search.
import { pendingToken } from "./chars.ts";
import type { Detector, Finding } from "./types.ts";

const HEADER_MAX = 1024;
const SEGMENT_MAX = 8192;
// The look-behind means a start offset only follows a non-base64url character, so runs scanned
// from different starts never overlap and the scan stays linear.
const PATTERN = new RegExp(
  `(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{2,${HEADER_MAX}}(?:\\.[A-Za-z0-9_-]{0,${SEGMENT_MAX}}){2,4}(?![A-Za-z0-9_-])`,
  "g",
);

function headerHasAlg(segment: string): boolean {
  try {
    const header: unknown = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
    return (
      typeof header === "object" && header !== null && typeof (header as { alg?: unknown }).alg === "string"
    );
  } catch {
    return false;
  }
}

export const jwt: Detector = {
  id: "jwt",
  maxLength: HEADER_MAX + 4 * (SEGMENT_MAX + 1) + 4,
  keywords: ["eyj"],
  lookBehind: 1,
  pendingFrom: pendingToken,
  find(text) {
    const out: Finding[] = [];
    for (const m of text.matchAll(PATTERN)) {
      const dots = m[0].split(".").length - 1;
      // Three segments (JWS) or five (JWE); four is neither, take the first three.
      const token = dots === 3 ? m[0].slice(0, m[0].lastIndexOf(".")) : m[0];
      if (headerHasAlg(token.slice(0, token.indexOf("."))))
        out.push({ start: m.index, end: m.index + token.length, detector: "jwt" });
    }
    return out;
  },
};
