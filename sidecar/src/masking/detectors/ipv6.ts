// IPv6 addresses (including "::ffff:1.2.3.4" forms), confirmed by node:net isIP. Candidates are
// maximal runs of hex digits, ":" and "." around each ":", so every character is looked at a
// bounded number of times.
import { isIP } from "node:net";
import { codeAt, isDigit, isHexDigit, isWordChar, pendingToken } from "./chars.ts";
import type { Detector, Finding } from "./types.ts";

const MAX_TEXT = 45; // longest textual IPv6 address (with an embedded IPv4 tail)

const isRunChar = (c: number) => isHexDigit(c) || c === 58 || c === 46;

/**
 * Reject what is technically IPv6 but is really punctuation or code: "::", "a::b", "x[1::2]".
 * An address worth masking has two or more groups and at least four hex digits.
 */
function substantial(candidate: string): boolean {
  let groups = 0;
  let hex = 0;
  for (const g of candidate.split(":")) if (g.length > 0) groups++;
  for (let i = 0; i < candidate.length; i++) if (isHexDigit(candidate.charCodeAt(i))) hex++;
  return groups >= 2 && hex >= 4;
}

export const ipv6: Detector = {
  id: "ipv6",
  maxLength: MAX_TEXT + 2,
  lookBehind: 1,
  pendingFrom: pendingToken,
  find(text) {
    const out: Finding[] = [];
    let from = 0;
    for (let colon = text.indexOf(":", from); colon >= 0; colon = text.indexOf(":", from)) {
      let start = colon;
      while (start > from && isRunChar(text.charCodeAt(start - 1))) start--;
      let end = colon + 1;
      while (end < text.length && isRunChar(text.charCodeAt(end))) end++;
      from = end;
      // Part of an identifier ("std::vector", "Base::add") or too long to be one address.
      if (isWordChar(codeAt(text, start - 1)) || isWordChar(codeAt(text, end))) continue;
      // Prose punctuation after the address: "reach fe80::1." / "at ::ffff:a:b:".
      while (end > start && text.charCodeAt(end - 1) === 46) end--;
      if (end - start > MAX_TEXT) continue;
      let candidate = text.slice(start, end);
      if (isIP(candidate) !== 6 && candidate.endsWith(":") && !candidate.endsWith("::")) {
        end--;
        candidate = candidate.slice(0, -1);
      }
      if (isIP(candidate) === 6 && substantial(candidate) && !isDigit(codeAt(text, end)))
        out.push({ start, end, detector: "ipv6" });
    }
    return out;
  },
};
