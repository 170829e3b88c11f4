// Character classes shared by the hand-written scanners. Scanners walk the text once instead of
// using open-ended regexes, so their cost stays linear whatever the input looks like.

export function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

export function isAsciiLetter(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

export function isAlnum(c: number): boolean {
  return isDigit(c) || isAsciiLetter(c);
}

/** `\w`: letters, digits, underscore. NaN (outside the text) is not a word character. */
export function isWordChar(c: number): boolean {
  return isAlnum(c) || c === 95;
}

export function isHexDigit(c: number): boolean {
  return isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

/** Character code at `i`, or NaN outside the text, so boundary checks need no range tests. */
export function codeAt(text: string, i: number): number {
  return i >= 0 && i < text.length ? text.charCodeAt(i) : Number.NaN;
}

/**
 * `pendingFrom` of a value made of `inRun` characters (and decided by the first character after
 * them): the start of the run at the end of `text`, looking no further back than `from`.
 */
export function pendingRun(text: string, from: number, inRun: (c: number) => boolean): number {
  let i = text.length;
  while (i > from && inRun(text.charCodeAt(i - 1))) i--;
  return i;
}

/** Printable ASCII but space: what token-shaped values (keys, tokens, addresses) are made of. */
export function isTokenChar(c: number): boolean {
  return c > 32 && c < 127;
}

/**
 * `pendingFrom` of values that never contain whitespace or non-ASCII characters and are decided
 * by their run of such characters plus what comes before it: the last word, if it reaches the end.
 */
export function pendingToken(text: string, from: number): number {
  return pendingRun(text, from, isTokenChar);
}
