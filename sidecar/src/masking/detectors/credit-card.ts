// Payment card numbers (PANs): 13-19 digits, optionally grouped by single spaces or dashes,
// Luhn-valid, with a prefix and length some network issues (Visa, Mastercard incl. the 2-series,
// Amex, Discover, JCB, Diners, UnionPay, Maestro up to 19 digits, Mir). The network rule keeps
// 13-digit millisecond timestamps (leading 1) and other numeric ids that happen to pass Luhn (1 in
// 10) from being masked; the finding names the network.
import { codeAt, isDigit, isWordChar, pendingRun } from "./chars.ts";
import { triggerCheck } from "./triggers.ts";
import type { Detector, Finding } from "./types.ts";

const MIN_DIGITS = 13;
const MAX_DIGITS = 19;

/**
 * A run of digit groups joined by single "-" or " ". Dash-joined groups form one chunk that is
 * never split (a UUID made of digits stays one 32-digit chunk, so no card is carved out of it);
 * spaces separate chunks, and a card may start or end at any chunk ("qty 2 4111 1111 1111 1111").
 */
interface Chunk {
  start: number;
  end: number;
  digits: number;
  clean: boolean; // false when glued to a word or a decimal point ("v2", "3.14")
}

const isCardRunChar = (c: number) => isDigit(c) || c === 32 || c === 45 || c === 46;

export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

function digitsOf(text: string, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (isDigit(c)) s += text[i];
  }
  return s;
}

// Card networks by issuer prefix (IIN) and the lengths they issue; the first match names the family.
// biome-ignore format: a table
const NETWORKS: readonly [family: string, prefixes: readonly [number, number][], lengths: readonly number[]][] = [
  ["amex", [[34, 34], [37, 37]], [15]],
  ["mir", [[2200, 2204]], [16, 17, 18, 19]],
  ["mastercard", [[2221, 2720], [51, 55]], [16]],
  ["visa", [[4, 4]], [13, 16, 19]],
  ["jcb", [[3528, 3589]], [16, 17, 18, 19]],
  ["diners", [[300, 305], [3095, 3095], [36, 36], [38, 39]], [14, 15, 16, 17, 18, 19]],
  ["discover", [[6011, 6011], [644, 649], [65, 65], [622126, 622925]], [16, 17, 18, 19]],
  ["unionpay", [[62, 62]], [16, 17, 18, 19]],
  ["maestro", [[50, 50], [56, 58], [60, 69]], [12, 13, 14, 15, 16, 17, 18, 19]],
];

/** The card network of a Luhn-valid PAN, or undefined when no network issues that prefix and length. */
export function cardNetwork(digits: string): string | undefined {
  if (digits.length < MIN_DIGITS || digits.length > MAX_DIGITS || !luhnValid(digits)) return undefined;
  for (const [family, prefixes, lengths] of NETWORKS) {
    if (!lengths.includes(digits.length)) continue;
    for (const [lo, hi] of prefixes) {
      const width = String(lo).length;
      const p = Number(digits.slice(0, width));
      if (p >= lo && p <= hi) return family;
    }
  }
  return undefined;
}

/** Chunks of the run starting at `i` (a digit not preceded by a word character); returns run end. */
function readRun(text: string, i: number, chunks: Chunk[]): number {
  let pos = i;
  let chunk: Chunk | undefined;
  for (;;) {
    const gStart = pos;
    while (pos < text.length && isDigit(text.charCodeAt(pos))) pos++;
    const before = codeAt(text, gStart - 1);
    const after = codeAt(text, pos);
    const glued =
      (gStart === i && (isWordChar(before) || (before === 46 && isDigit(codeAt(text, gStart - 2))))) ||
      isWordChar(after) ||
      (after === 46 && isDigit(codeAt(text, pos + 1)));
    if (chunk && text.charCodeAt(gStart - 1) === 45) {
      chunk.end = pos;
      chunk.digits += pos - gStart;
      chunk.clean &&= !glued;
    } else {
      chunk = { start: gStart, end: pos, digits: pos - gStart, clean: !glued };
      chunks.push(chunk);
    }
    const sep = codeAt(text, pos);
    if ((sep === 45 || sep === 32) && isDigit(codeAt(text, pos + 1))) pos++;
    else return pos;
  }
}

/** At least MIN_DIGITS ASCII digits in the text (a card needs them). */
function enoughDigits(text: string): boolean {
  if (text.length < MIN_DIGITS) return false;
  let n = 0;
  for (let i = 0; i < text.length; i++) if (isDigit(text.charCodeAt(i)) && ++n >= MIN_DIGITS) return true;
  return false;
}

// (ASCII digits are the same bytes in UTF-8.)
const CARD_DIGITS = { bytes: "0123456789", min: MIN_DIGITS };

export const creditCard: Detector = {
  id: "creditCard",
  maxLength: MAX_DIGITS * 2 + 2,
  // A run of digit groups at the end (a "." may still turn out to be a decimal point).
  pendingFrom: (text, from) => pendingRun(text, from, isCardRunChar),
  trigger: CARD_DIGITS,
  mayOccurIn: triggerCheck(CARD_DIGITS),
  find(text) {
    const out: Finding[] = [];
    // Most values (ids, amounts, words) have too few digits to hold a card: no run to read.
    if (!enoughDigits(text)) return out;
    let i = 0;
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (!isDigit(c) || isWordChar(codeAt(text, i - 1))) {
        i++;
        continue;
      }
      const chunks: Chunk[] = [];
      const runEnd = readRun(text, i, chunks);
      // Earliest start, then the longest card from it; each chunk has >= 1 digit, so the inner
      // loop is bounded by MAX_DIGITS and the whole scan stays linear.
      let a = 0;
      while (a < chunks.length) {
        let best = -1;
        let family: string | undefined;
        const first = text.charCodeAt((chunks[a] as Chunk).start);
        let digits = "";
        for (let b = a; b < chunks.length && first >= 50 && first <= 54; b++) {
          const ch = chunks[b] as Chunk;
          if (!ch.clean || digits.length + ch.digits > MAX_DIGITS) break;
          digits += digitsOf(text, ch.start, ch.end);
          const network = cardNetwork(digits);
          if (network) {
            best = b;
            family = network;
          }
        }
        if (best >= 0) {
          out.push({
            start: (chunks[a] as Chunk).start,
            end: (chunks[best] as Chunk).end,
            detector: "creditCard",
            ...(family ? { family } : {}),
          });
          a = best + 1;
        } else a++;
      }
      i = runEnd + 1;
    }
    return out;
  },
};
