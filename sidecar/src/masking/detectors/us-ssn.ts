// US Social Security numbers. Dashed "123-45-6789" anywhere; nine bare or space-grouped digits only
// where the context says SSN (a "SSN:" label just before, or the field/column name), because nine
// digits alone are as likely an order number.
// US Social Security numbers. Dashed "123-45-6789" anywhere; nine bare digits only where the
// context says SSN (a "SSN:" label just before, or the field/column name), because nine digits
// alone are as likely an order number.

import { pendingToken } from "./chars.ts";
import { isSsnKey } from "./hints.ts";
import type { Detector, Finding } from "./types.ts";

// Fixed-width patterns: no unbounded repetition, so matching is linear.
const DASHED = /(?<![\w-])(\d{3})-(\d{2})-(\d{4})(?![\w-])/g;
// With a label, the digits may also be grouped by spaces ("SSN 536 22 1234"): spaced groups alone
// are too common (amounts, serials) to mask without one.
const LABELLED =
  /(?<![A-Za-z0-9])(?:ssn|social security(?: number| no\.?)?)["']?[ \t]{0,3}[:=#]?[ \t]{0,3}["']?(\d{3}([ -]?)\d{2}\2\d{4})(?![\w-])/dgi;
const BARE = /(?<![\w-])(\d{3}([ -]?)\d{2}\2\d{4})(?![\w-])/g;

/** SSA rules: no area 000, 666 or 900-999; no group 00; no serial 0000. */
export function ssnValid(area: string, group: string, serial: string): boolean {
  return area !== "000" && area !== "666" && area[0] !== "9" && group !== "00" && serial !== "0000";
}

const validBare = (grouped: string) => {
  const d = grouped.replace(/[ -]/g, "");
  return ssnValid(d.slice(0, 3), d.slice(3, 5), d.slice(5));
};

export const usSsn: Detector = {
  id: "usSsn",
  maxLength: 64,
  lookBehind: 40,
  pendingFrom: pendingToken,
  find(text, hint) {
    const out: Finding[] = [];
    for (const m of text.matchAll(DASHED))
      if (ssnValid(m[1] ?? "", m[2] ?? "", m[3] ?? ""))
        out.push({ start: m.index, end: m.index + m[0].length, detector: "usSsn" });
    for (const m of text.matchAll(LABELLED)) {
      const span = m.indices?.[1];
      if (span && validBare(m[1] ?? "")) out.push({ start: span[0], end: span[1], detector: "usSsn" });
    }
    if (isSsnKey(hint?.key))
      for (const m of text.matchAll(BARE))
        if (validBare(m[1] ?? ""))
          out.push({ start: m.index, end: m.index + m[0].length, detector: "usSsn" });
    return out;
  },
};
