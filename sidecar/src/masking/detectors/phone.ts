// Phone numbers, validated by libphonenumber-js (full metadata, so "valid" means a number the
// numbering plan actually assigns, not just a plausible length). The library's text scanner costs
// tens of µs per call and far more on digit-heavy text, so a linear pre-pass cuts the text into
// short phone-shaped pieces, drops those too short for the default country, and only the rest
// reach the library. The library (full metadata: ~60 MB of heap) is loaded on the first piece that
// needs it, so a sidecar whose policies never mask phones, or never see phone-shaped text, does
// not pay for it.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type { CountryCode } from "libphonenumber-js/max";
import { LRUCache } from "lru-cache";
import { codeAt, isDigit, isWordChar } from "./chars.ts";
import { isPhoneKey } from "./hints.ts";
import type { Detector, Finding } from "./types.ts";

export interface PhoneOptions {
  /** Country assumed for numbers written without "+<country code>". Default "US". */
  defaultCountry?: CountryCode;
}

const MIN_DIGITS = 7;
const MAX_DIGITS = 15; // E.164
const MAX_PIECE = 32;
const CONTEXT = 4;

function isPhoneChar(c: number): boolean {
  // digits, space, NBSP, ( ) + - .
  return isDigit(c) || c === 32 || c === 0xa0 || c === 40 || c === 41 || c === 43 || c === 45 || c === 46;
}

const isSpace = (c: number) => c === 32 || c === 0xa0;

/** Narrow [start, end) to begin at a digit, "+" or "(" and end at a digit. */
function trim(text: string, start: number, end: number): [number, number] {
  let s = start;
  let e = end;
  while (s < e) {
    const c = text.charCodeAt(s);
    if (isDigit(c) || c === 43 || c === 40) break;
    s++;
  }
  while (e > s && !isDigit(text.charCodeAt(e - 1))) e--;
  return [s, e];
}

function countDigits(text: string, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) if (isDigit(text.charCodeAt(i))) n++;
  return n;
}

type Sink = (start: number, end: number) => void;

/**
 * Pieces of one run of phone characters worth asking the library about. A run with more digits
 * than one number can hold is split where a new number plausibly starts (before "+" or "(" after
 * a space, at double spaces), then, if still too long, at every space.
 */
function pieces(text: string, start: number, end: number, sink: Sink): void {
  const [s, e] = trim(text, start, end);
  const digits = countDigits(text, s, e);
  if (digits < MIN_DIGITS) return;
  if (digits <= MAX_DIGITS && e - s <= MAX_PIECE) {
    sink(s, e);
    return;
  }
  let from = s;
  for (let i = s + 1; i <= e; i++) {
    const c = i < e ? text.charCodeAt(i) : Number.NaN;
    if (i === e || (isSpace(text.charCodeAt(i - 1)) && (c === 43 || c === 40 || isSpace(c)))) {
      splitAtSpaces(text, from, i, sink);
      from = i;
    }
  }
}

function splitAtSpaces(text: string, start: number, end: number, sink: Sink): void {
  const [s, e] = trim(text, start, end);
  const digits = countDigits(text, s, e);
  if (digits < MIN_DIGITS) return;
  if (digits <= MAX_DIGITS && e - s <= MAX_PIECE) {
    sink(s, e);
    return;
  }
  let tokenStart = s;
  for (let i = s; i <= e; i++) {
    if (i === e || isSpace(text.charCodeAt(i))) {
      const [ts, te] = trim(text, tokenStart, i);
      const d = countDigits(text, ts, te);
      if (d >= MIN_DIGITS && d <= MAX_DIGITS && te - ts <= MAX_PIECE) sink(ts, te);
      tokenStart = i + 1;
    }
  }
}

/** Move `at` by up to |by| characters, stopping at the text's ends and at line ends. */
function widen(text: string, at: number, by: number): number {
  const step = by < 0 ? -1 : 1;
  let i = at;
  for (let n = 0; n < Math.abs(by); n++) {
    const c = codeAt(text, step < 0 ? i - 1 : i);
    if (Number.isNaN(c) || c === 10 || c === 13) break;
    i += step;
  }
  return i;
}

/**
 * A cheap necessary condition for a national-format piece (no "+") to hold a valid number of the
 * default country: some run of its space-separated tokens has digits that, possibly after the
 * national (trunk) prefix, match the country's national number pattern, or start with its
 * international dialling prefix. A valid number always passes; decoys such as "1234567890" in
 * the US (no area code starts with 1) are dropped without the library's ~30 µs per call. The
 * patterns come from the library's metadata through methods its types do not declare; if they are
 * missing, every piece goes to the library (slower, same result).
 */
type PhoneLibrary = typeof import("libphonenumber-js/max");
let library: PhoneLibrary | undefined;

/** libphonenumber-js with full metadata, loaded on first use (synchronously: detectors are sync). */
function phoneLibrary(): PhoneLibrary {
  // The ES module build (the CommonJS one lacks Metadata), through require(esm).
  library ??= createRequire(import.meta.url)(
    fileURLToPath(import.meta.resolve("libphonenumber-js/max")),
  ) as PhoneLibrary;
  return library;
}

/** Whether the phone library has been loaded in this process (for the memory test). */
export function phoneLibraryLoaded(): boolean {
  return library !== undefined;
}

function createNationalGate(country: CountryCode): (text: string, s: number, e: number) => boolean {
  const metadata = new (phoneLibrary().Metadata)();
  metadata.selectNumberingPlan(country);
  const plan = metadata.numberingPlan as unknown as Record<string, unknown> | undefined;
  const call = (name: string): string | undefined => {
    const f = plan?.[name];
    if (typeof f !== "function") return undefined;
    const v: unknown = f.call(plan);
    return typeof v === "string" && v !== "" ? v : undefined;
  };
  const compile = (source: string | undefined, whole: boolean): RegExp | undefined => {
    if (source === undefined) return undefined;
    try {
      return new RegExp(whole ? `^(?:${source})$` : `^(?:${source})`);
    } catch {
      return undefined;
    }
  };
  const nationalNumber = compile(call("nationalNumberPattern"), true);
  if (!nationalNumber) return () => true;
  const prefixSource = call("nationalPrefixForParsing");
  // A prefix rule with capture groups rewrites the number (AR, MX, …): too subtle to mimic here.
  if (prefixSource && /\((?!\?)/.test(prefixSource)) return () => true;
  const nationalPrefix = compile(prefixSource, false);
  const idd = compile(call("IDDPrefix"), false);
  const passes = (digits: string): boolean => {
    if (nationalNumber.test(digits) || idd?.test(digits)) return true;
    const m = nationalPrefix?.exec(digits);
    return m !== null && m !== undefined && m[0].length > 0 && nationalNumber.test(digits.slice(m[0].length));
  };
  return (text, s, e) => {
    const tokens: string[] = [];
    let token = "";
    for (let i = s; i <= e; i++) {
      const c = i < e ? text.charCodeAt(i) : 32;
      if (isSpace(c)) {
        if (token !== "") tokens.push(token);
        token = "";
      } else if (isDigit(c)) token += text[i];
    }
    for (let a = 0; a < tokens.length; a++) {
      let digits = "";
      for (let b = a; b < tokens.length; b++) {
        digits += tokens[b];
        if (digits.length > MAX_DIGITS) break;
        if (passes(digits)) return true;
      }
    }
    return false;
  };
}

export function createPhoneDetector(options: PhoneOptions = {}): Detector {
  const defaultCountry = options.defaultCountry ?? "US";
  // `maxTries` bounds the library's retries inside one piece; it is accepted at runtime but missing
  // from the published types, hence the separate (non-literal) options object.
  const libOptions = { defaultCountry, maxTries: 4 };
  let nationalGate: ((text: string, s: number, e: number) => boolean) | undefined;
  // The library's answers by piece (with its context): stream masking rescans the text it keeps
  // for look-behind on every chunk, and a digit-heavy line would otherwise cost a library call
  // per piece per chunk.
  const answers = new LRUCache<string, { startsAt: number; endsAt: number }[]>({ max: 1024 });

  return {
    id: "phone",
    maxLength: 64,
    // The run of phone characters at the end, and any run with digits enough for a number that
    // ended less than CONTEXT characters before it (the library looks that far past a number).
    pendingFrom(text, from) {
      let at = text.length;
      let i = text.length;
      for (;;) {
        let end = i;
        while (end > from && !isPhoneChar(text.charCodeAt(end - 1))) {
          const c = text.charCodeAt(end - 1);
          if (c === 10 || c === 13) return at;
          end--;
        }
        if (end === from || text.length - end >= CONTEXT) return at;
        let start = end;
        while (start > from && isPhoneChar(text.charCodeAt(start - 1))) start--;
        if (end === text.length || countDigits(text, start, end) >= MIN_DIGITS) at = start;
        i = start;
      }
    },
    find(text, hint) {
      // JSON numbers are mostly ids and counters: only a phone-named field makes them phones.
      if (hint?.numeric && !isPhoneKey(hint.key)) return [];
      const out: Finding[] = [];
      const check: Sink = (s, e) => {
        const intl =
          text.charCodeAt(s) === 43 || (text.charCodeAt(s) === 40 && text.charCodeAt(s + 1) === 43);
        nationalGate ??= createNationalGate(defaultCountry);
        if (!intl && !nationalGate(text, s, e)) return;
        // A few characters around the piece let the library apply its own context checks (it
        // rejects "2024-01-15 10" when ":30" follows: a time stamp). Never across a line end, so
        // a line's findings do not depend on the next line (stream masking relies on that).
        const from = widen(text, s, -CONTEXT);
        const to = widen(text, e, CONTEXT);
        const slice = text.slice(from, to);
        let found = answers.get(slice);
        if (!found) {
          found = phoneLibrary()
            .findPhoneNumbersInText(slice, libOptions)
            .map((m) => ({
              startsAt: m.startsAt,
              endsAt: m.endsAt,
            }));
          answers.set(slice, found);
        }
        for (const m of found)
          if (from + m.endsAt > s && from + m.startsAt < e)
            out.push({ start: from + m.startsAt, end: from + m.endsAt, detector: "phone" });
      };
      let i = 0;
      while (i < text.length) {
        if (!isPhoneChar(text.charCodeAt(i))) {
          i++;
          continue;
        }
        let start = i;
        while (i < text.length && isPhoneChar(text.charCodeAt(i))) i++;
        let end = i;
        // Digits glued to letters ("x2133734253y", "ab12345678") are identifiers, not phones:
        // drop the glued token at either end of the run.
        if (isWordChar(codeAt(text, start - 1)) && isDigit(text.charCodeAt(start)))
          while (start < end && !isSpace(text.charCodeAt(start))) start++;
        if (isWordChar(codeAt(text, end)) && isDigit(text.charCodeAt(end - 1)))
          while (end > start && !isSpace(text.charCodeAt(end - 1))) end--;
        if (end > start) pieces(text, start, end, check);
      }
      return out;
    },
  };
}
