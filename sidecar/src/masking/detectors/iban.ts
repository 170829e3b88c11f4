// International Bank Account Numbers: country code, 2 check digits, BBAN of the country's length,
// written compact or in groups separated by single spaces; ISO 13616 mod-97 must equal 1.
import { codeAt, isAlnum, isDigit } from "./chars.ts";
import type { Detector, Finding } from "./types.ts";

// Total IBAN length per country (SWIFT IBAN registry).
// biome-ignore format: a table reads better packed
const LENGTHS: Readonly<Record<string, number>> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BI: 27, BR: 29, BY: 28,
  CH: 21, CR: 22, CY: 28, CZ: 24, DE: 22, DJ: 27, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18,
  FK: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23, GL: 18, GR: 27, GT: 28, HN: 28, HR: 21, HU: 28,
  IE: 22, IL: 23, IQ: 23, IS: 26, IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28, LC: 32, LI: 21, LT: 20,
  LU: 20, LV: 21, LY: 25, MC: 27, MD: 24, ME: 22, MK: 19, MN: 20, MR: 27, MT: 31, MU: 30, NI: 28,
  NL: 18, NO: 15, OM: 23, PK: 24, PL: 28, PS: 29, PT: 25, QA: 29, RO: 24, RS: 22, RU: 33, SA: 24,
  SC: 31, SD: 18, SE: 24, SI: 19, SK: 24, SM: 27, SO: 23, ST: 25, SV: 28, TL: 23, TN: 24, TR: 26,
  UA: 29, VA: 22, VG: 24, XK: 20, YE: 30,
};
const MAX_LENGTH = 34;

// Only the fixed 4-character head is a regex; the body is consumed by hand to exactly the
// country's length, so there is no ambiguity about where groups split and nothing to backtrack.
const HEAD = /(?<![A-Za-z0-9])([A-Z]{2})(\d{2})/g;

/** ISO 13616 check: move the head to the end, letters to 10..35, remainder mod 97 must be 1. */
export function ibanChecksumValid(compact: string): boolean {
  const s = compact.slice(4) + compact.slice(0, 4);
  let rem = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (isDigit(c)) rem = (rem * 10 + (c - 48)) % 97;
    else {
      const v = (c | 32) - 97 + 10; // case-insensitive letter value
      rem = (rem * 100 + v) % 97;
    }
  }
  return rem === 1;
}

const isUpper = (c: number) => c >= 65 && c <= 90;

/** `text` from `p` on could be the head of an IBAN ([A-Z]{2}\d{2}, cut short by the end). */
function couldStart(text: string, p: number): boolean {
  if (isAlnum(codeAt(text, p - 1))) return false;
  for (let k = 0; k < 4 && p + k < text.length; k++) {
    const c = text.charCodeAt(p + k);
    if (!(k < 2 ? isUpper(c) : isDigit(c))) return false;
  }
  return true;
}

export const iban: Detector = {
  id: "iban",
  maxLength: MAX_LENGTH * 2,
  // An IBAN in the making: two capitals and two digits (as far as they have arrived) not glued to
  // a letter or digit, then letters, digits and single spaces up to the end.
  pendingFrom(text, from) {
    let i = text.length;
    while (i > from) {
      const c = text.charCodeAt(i - 1);
      const single =
        c === 32 && isAlnum(codeAt(text, i - 2)) && (i === text.length || isAlnum(codeAt(text, i)));
      if (!isAlnum(c) && !single) break;
      i--;
    }
    for (let p = i; p < text.length; p++) if (couldStart(text, p)) return p;
    return text.length;
  },
  find(text) {
    const out: Finding[] = [];
    HEAD.lastIndex = 0;
    for (let m = HEAD.exec(text); m; m = HEAD.exec(text)) {
      const length = LENGTHS[m[1] ?? ""];
      const check = Number(m[2]);
      if (length === undefined || check < 2 || check > 98) continue;
      let compact = m[0];
      let pos = m.index + 4;
      while (compact.length < length) {
        let c = codeAt(text, pos);
        if (c === 32 && isAlnum(codeAt(text, pos + 1))) c = codeAt(text, ++pos);
        if (!isAlnum(c)) break;
        compact += text[pos];
        pos++;
      }
      if (compact.length !== length || isAlnum(codeAt(text, pos))) continue;
      if (!ibanChecksumValid(compact)) continue;
      out.push({ start: m.index, end: pos, detector: "iban" });
      HEAD.lastIndex = pos;
    }
    return out;
  },
};
