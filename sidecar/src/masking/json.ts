// Lossless JSON numbers. JSON.parse rounds a 19-digit card number stored as a JSON number to
// the nearest double: masking the rounded number would miss the real digits (the Luhn check
// fails), and re-serialising it would still leak most of them. Numbers whose source text a JS
// number does not reproduce are kept as JSON.rawJSON values instead: masking sees the original
// digits and JSON.stringify writes them back unchanged.

interface RawJson {
  readonly rawJSON: string;
}

// JSON.rawJSON / isRawJSON and the reviver's source context are in Node 24 but not yet in the
// TypeScript lib this project targets.
const J = JSON as unknown as {
  rawJSON(text: string): RawJson;
  isRawJSON(value: unknown): boolean;
  parse(
    text: string,
    reviver: (key: string, value: unknown, context?: { source?: string }) => unknown,
  ): unknown;
};

export function parseJsonLossless(text: string): unknown {
  // The reviver runs once per value and keeps V8 off its fast parser (most of the parse's cost
  // on a typical API answer); it changes nothing when every number is reproduced as written.
  if (!hasInexactNumber(text)) return JSON.parse(text);
  return J.parse(text, (_key, value, context) =>
    typeof value === "number" && context?.source !== undefined && String(value) !== context.source
      ? J.rawJSON(context.source)
      : value,
  );
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;
/** Digits of an integer that a double always holds exactly (2^53 has 16). */
const EXACT_DIGITS = 15;

/**
 * Whether a number token outside strings may not be reproduced by String(JSON.parse(token)):
 * anything but an integer of at most 15 digits (a fraction, an exponent, -0, longer digit
 * runs). Over-answers on invalid JSON (JSON.parse then throws either way); never under-answers
 * on valid JSON, whose number tokens are exactly the runs scanned here.
 */
export function hasInexactNumber(text: string): boolean {
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // Skip the string (escapes included).
      i++;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === BACKSLASH) i += 2;
        else if (d === QUOTE) break;
        else i++;
      }
      i++;
      continue;
    }
    if (c === MINUS || (c >= ZERO && c <= NINE)) {
      const start = c === MINUS ? i + 1 : i;
      let j = start;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d < ZERO || d > NINE) break;
        j++;
      }
      const digits = j - start;
      if (digits === 0 || digits > EXACT_DIGITS) return true;
      if (c === MINUS && digits === 1 && text.charCodeAt(start) === ZERO) return true; // -0
      if (j < n) {
        const d = text.charCodeAt(j);
        if (d === 0x2e || d === 0x65 || d === 0x45) return true; // . e E
      }
      i = j;
      continue;
    }
    i++;
  }
  return false;
}

export function isRawJson(value: unknown): value is RawJson {
  return J.isRawJSON(value);
}
