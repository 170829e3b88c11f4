// PEM private keys (PKCS#1/#8, EC, OpenSSH, encrypted, PGP key blocks): from the BEGIN line to the
// matching END line. A BEGIN without its END masks to the end of the text: a truncated key is
// still key material (fail closed).
import type { Detector, Finding } from "./types.ts";

const BEGIN = "-----BEGIN ";
// Label after "-----BEGIN ": up to four words then "PRIVATE KEY" (or PGP's "PRIVATE KEY BLOCK").
const LABEL = /((?:[A-Z0-9]+ ){0,4}PRIVATE KEY(?: BLOCK)?)-----/y;

// What may still grow into a LABEL and its closing dashes.
const PARTIAL_LABEL = /^[A-Z0-9 ]*-{0,4}$/;

export interface PemBlock {
  start: number;
  /** Offset just past the END line's dashes, or -1 when the block is unterminated. */
  end: number;
  /** The exact END marker that closes this block. */
  endMarker: string;
}

/** The next private-key BEGIN at or after `from`, with where (if anywhere) it ends. */
export function nextPemBlock(text: string, from: number): PemBlock | null {
  for (let at = text.indexOf(BEGIN, from); at >= 0; at = text.indexOf(BEGIN, at + 1)) {
    LABEL.lastIndex = at + BEGIN.length;
    const m = LABEL.exec(text);
    if (!m) continue;
    const endMarker = `-----END ${m[1]}-----`;
    const close = text.indexOf(endMarker, LABEL.lastIndex);
    return { start: at, end: close < 0 ? -1 : close + endMarker.length, endMarker };
  }
  return null;
}

export const privateKey: Detector = {
  id: "privateKey",
  maxLength: Number.POSITIVE_INFINITY,
  keywords: ["-----begin "],
  lookBehind: 0,
  // A BEGIN line still arriving (a block whose BEGIN line is complete is held by the stream).
  pendingFrom(text, from) {
    const lineStart = Math.max(from, text.lastIndexOf("\n") + 1);
    const at = text.lastIndexOf(BEGIN);
    if (at >= lineStart && PARTIAL_LABEL.test(text.slice(at + BEGIN.length))) return at;
    for (let n = Math.min(BEGIN.length - 1, text.length - lineStart); n > 0; n--)
      if (text.endsWith(BEGIN.slice(0, n))) return text.length - n;
    return text.length;
  },
  find(text) {
    const out: Finding[] = [];
    let from = 0;
    for (let b = nextPemBlock(text, from); b; b = nextPemBlock(text, from)) {
      // Unterminated: everything after is inside the block, which also stops a text of many
      // BEGINs without ENDs from rescanning to the end once per BEGIN.
      const end = b.end < 0 ? text.length : b.end;
      out.push({ start: b.start, end, detector: "privateKey" });
      from = end;
    }
    return out;
  },
};
