// Multi-keyword search (Aho-Corasick compiled to a DFA): one pass over a text finds which of many
// ASCII keywords occur in it, case-insensitively, at one table lookup per character. Detectors use
// it as a prefilter: most values contain none of the keywords a secret rule needs, and then the
// rule's patterns never run.

export interface KeywordScanner {
  /** Number of keywords (ids 0..size-1, in the order given). */
  readonly size: number;
  /** OR of the masks of the keywords occurring in `text` (see createKeywordScanner). */
  maskOf(text: string): number;
  /** The same over UTF-8 bytes `[start, end)` (keywords are ASCII, the same bytes in UTF-8). */
  maskOfBytes(bytes: Uint8Array, start: number, end: number): number;
  /** Calls `hit(keyword id, end offset)` for every occurrence, in text order. */
  forEach(text: string, hit: (keyword: number, end: number) => void): void;
}

/**
 * `masks[i]` is a bit set for keyword i (callers give each detector a bit); keywords must be
 * non-empty printable ASCII and are matched with A-Z folded to a-z.
 */
export function createKeywordScanner(keywords: readonly string[], masks?: readonly number[]): KeywordScanner {
  // Character classes: 0 for every character in no keyword (it resets the search), 1.. otherwise.
  const cls = new Uint8Array(128);
  let width = 1;
  const fold = (c: number) => (c >= 65 && c <= 90 ? c + 32 : c);
  for (const k of keywords) {
    if (k.length === 0) throw new Error("empty keyword");
    for (let i = 0; i < k.length; i++) {
      const c = fold(k.charCodeAt(i));
      if (c < 32 || c > 126) throw new Error(`keyword ${JSON.stringify(k)} is not printable ASCII`);
      if (cls[c] === 0) {
        cls[c] = width++;
        if (c >= 97 && c <= 122) cls[c - 32] = cls[c] as number;
      }
    }
  }
  if (width > 255) throw new Error("too many distinct keyword characters");

  // Trie.
  const next: number[][] = [[]];
  const outs: number[][] = [[]];
  for (const [id, k] of keywords.entries()) {
    let s = 0;
    for (let i = 0; i < k.length; i++) {
      const c = cls[fold(k.charCodeAt(i))] as number;
      let t = next[s]?.[c];
      if (t === undefined) {
        t = next.length;
        next.push([]);
        outs.push([]);
        (next[s] as number[])[c] = t;
      }
      s = t;
    }
    (outs[s] as number[]).push(id);
  }

  // Breadth-first failure links, folded into a full transition table.
  const states = next.length;
  const delta = new Int32Array(states * width);
  const fail = new Int32Array(states);
  const queue: number[] = [];
  for (let c = 1; c < width; c++) {
    const t = next[0]?.[c];
    if (t !== undefined) {
      delta[c] = t;
      queue.push(t);
    }
  }
  for (let q = 0; q < queue.length; q++) {
    const s = queue[q] as number;
    (outs[s] as number[]).push(...(outs[fail[s] as number] as number[]));
    for (let c = 1; c < width; c++) {
      const t = next[s]?.[c];
      if (t === undefined) delta[s * width + c] = delta[(fail[s] as number) * width + c] as number;
      else {
        fail[t] = delta[(fail[s] as number) * width + c] as number;
        delta[s * width + c] = t;
        queue.push(t);
      }
    }
  }
  const outMask = new Int32Array(states);
  for (let s = 0; s < states; s++)
    for (const id of outs[s] as number[]) outMask[s] = (outMask[s] as number) | (masks?.[id] ?? 1);
  const outList = outs.map((o) => (o.length > 0 ? Int32Array.from(new Set(o)) : undefined));

  return {
    size: keywords.length,
    maskOf(text) {
      let s = 0;
      let mask = 0;
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        s = delta[s * width + (c < 128 ? (cls[c] as number) : 0)] as number;
        mask |= outMask[s] as number;
      }
      return mask;
    },
    maskOfBytes(bytes, start, end) {
      let s = 0;
      let mask = 0;
      for (let i = start; i < end; i++) {
        const c = bytes[i] as number;
        s = delta[s * width + (c < 128 ? (cls[c] as number) : 0)] as number;
        mask |= outMask[s] as number;
      }
      return mask;
    },
    forEach(text, hit) {
      let s = 0;
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        s = delta[s * width + (c < 128 ? (cls[c] as number) : 0)] as number;
        const o = outList[s];
        if (o) for (let j = 0; j < o.length; j++) hit(o[j] as number, i + 1);
      }
    },
  };
}
