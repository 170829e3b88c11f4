// Email addresses. Found by walking out from each "@" instead of a regex: an open-ended
// `[local]+@` regex retried at every offset is quadratic on long runs of local-part characters.
import { codeAt, isAlnum, isAsciiLetter, pendingToken } from "./chars.ts";
import { triggerCheck } from "./triggers.ts";
import type { Detector, Finding } from "./types.ts";

const MAX_LOCAL = 64;
const MAX_DOMAIN = 253;

// RFC 5322 "atext" minus the rarely seen characters that also delimit tokens in prose and code.
function isLocalChar(c: number): boolean {
  return (
    isAlnum(c) ||
    c === 46 /* . */ ||
    c === 95 /* _ */ ||
    c === 37 /* % */ ||
    c === 43 /* + */ ||
    c === 45 /* - */ ||
    c === 39 /* ' (o'brien) */
  );
}

/** Start of a quoted local part ending just before `at` (`"jane doe"@…`), or -1. */
function quotedLocalStart(text: string, at: number): number {
  if (text.charCodeAt(at - 1) !== 34) return -1;
  for (let i = at - 2; i >= 0 && at - i <= MAX_LOCAL; i--) {
    const c = text.charCodeAt(i);
    if (c === 10 || c === 13) return -1;
    if (c === 34 && text.charCodeAt(i - 1) !== 92)
      return i + 1 < at - 1 && !isAlnum(codeAt(text, i - 1)) ? i : -1;
  }
  return -1;
}

function isDomainChar(c: number): boolean {
  return isAlnum(c) || c === 46 || c === 45;
}

/**
 * `scheme://user:password@host`: the part before "@" is URL userinfo, not a mailbox (the
 * urlCredentials detector owns the password).
 */
function inUrlUserinfo(text: string, localStart: number): boolean {
  const prev = codeAt(text, localStart - 1);
  if (prev === 47 /* / */) return text.startsWith("://", localStart - 3);
  if (prev !== 58 /* : */) return false;
  const floor = Math.max(0, localStart - 1 - 256);
  for (let i = localStart - 2; i >= floor; i--) {
    const c = text.charCodeAt(i);
    if (c === 47) return text.startsWith("://", i - 2);
    if (c === 64 || c === 58 || c <= 32) return false;
  }
  return false;
}

/** Domain end after `start`, or -1: dot-separated labels, alphabetic TLD of 2+ letters. */
function domainEnd(text: string, start: number): number {
  let end = start;
  while (end < text.length && end - start <= MAX_DOMAIN && isDomainChar(text.charCodeAt(end))) end++;
  if (end - start > MAX_DOMAIN) return -1;
  // Drop what prose appends ("mail me at a@b.com.") and trailing labels that cannot be a TLD.
  const labels = text.slice(start, end).split(".");
  while (labels.length > 0 && labels[labels.length - 1] === "") labels.pop();
  while (labels.length > 2 && !isTld(labels[labels.length - 1] ?? "")) labels.pop();
  if (labels.length < 2 || !isTld(labels[labels.length - 1] ?? "")) return -1;
  for (const l of labels)
    if (l.length === 0 || l.length > 63 || l.startsWith("-") || l.endsWith("-")) return -1;
  return start + labels.join(".").length;
}

function isTld(label: string): boolean {
  if (label.length < 2 || label.length > 63) return false;
  for (let i = 0; i < label.length; i++) if (!isAsciiLetter(label.charCodeAt(i))) return false;
  return true;
}

const AT = { bytes: "@", min: 1 };

export const email: Detector = {
  id: "email",
  maxLength: MAX_LOCAL + 1 + MAX_DOMAIN + 2,
  keywords: ["@"],
  lookBehind: 0,
  pendingFrom: pendingToken,
  // Every finding is anchored on an "@". (A bounded loop: indexOf would search past `end`, to the
  // end of the whole buffer, which for a value inside a large read is quadratic.)
  trigger: AT,
  mayOccurIn: triggerCheck(AT),
  find(text) {
    const out: Finding[] = [];
    let from = 0;
    for (let at = text.indexOf("@", from); at >= 0; at = text.indexOf("@", from)) {
      from = at + 1;
      const quoted = quotedLocalStart(text, at);
      if (quoted >= 0) {
        const end = domainEnd(text, at + 1);
        if (end >= 0) {
          out.push({ start: quoted, end, detector: "email" });
          from = end;
        }
        continue;
      }
      let start = at;
      while (start > 0 && at - start <= MAX_LOCAL && isLocalChar(text.charCodeAt(start - 1))) start--;
      if (at - start > MAX_LOCAL) continue;
      // A local part cannot start with "." (and a leading "'" is a quote around the address).
      while (start < at && (text.charCodeAt(start) === 46 || text.charCodeAt(start) === 39)) start++;
      if (start === at || inUrlUserinfo(text, start)) continue;
      const end = domainEnd(text, at + 1);
      if (end < 0) continue;
      out.push({ start, end, detector: "email" });
      from = end;
    }
    return out;
  },
};
