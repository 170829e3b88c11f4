// Byte triggers: the declarative form of a detector's byte pre-check ("no match without at least
// `min` of these ASCII bytes"). A detector set fuses the triggers of all its detectors into one
// pass over a value's bytes (one table lookup per byte), instead of one loop per detector: the
// PostgreSQL guard runs the check on every value of every DataRow when detectors are on.

export interface ByteTrigger {
  /** ASCII characters (UTF-8 keeps ASCII bytes for ASCII characters only, so the test is exact). */
  readonly bytes: string;
  /** `find` matches only text with at least this many bytes from `bytes`. */
  readonly min: number;
}

/** The single-trigger check, for a detector's own `mayOccurIn`. */
export function triggerCheck(t: ByteTrigger): (bytes: Uint8Array, start: number, end: number) => boolean {
  return compileTriggers([t]);
}

/**
 * One pass over `bytes[start, end)` that is true as soon as any trigger is met. Triggers on the
 * same bytes merge (the lowest `min` wins); up to 8 distinct byte sets.
 */
export function compileTriggers(
  triggers: readonly ByteTrigger[],
): (bytes: Uint8Array, start: number, end: number) => boolean {
  const classes = new Map<string, number>();
  for (const t of triggers) {
    const ascii = t.bytes.length > 0 && [...t.bytes].every((ch) => ch.charCodeAt(0) < 0x80);
    if (t.min < 1 || !ascii)
      throw new Error(`a byte trigger needs ASCII bytes and min >= 1: ${JSON.stringify(t)}`);
    const key = [...new Set(t.bytes)].sort().join("");
    classes.set(key, Math.min(classes.get(key) ?? t.min, t.min));
  }
  if (classes.size > 8) throw new Error("more than 8 distinct byte triggers in one set");
  const table = new Uint8Array(256);
  const mins = new Int32Array(8);
  let k = 0;
  let shortest = Number.POSITIVE_INFINITY;
  for (const [bytes, min] of classes) {
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes.charCodeAt(i);
      table[b] = (table[b] as number) | (1 << k);
    }
    mins[k++] = min;
    shortest = Math.min(shortest, min);
  }
  // Counts persist between calls; only the classes a call touched are reset (most values touch
  // none, and a fill per value would cost more than the scan of a short one).
  const counts = new Int32Array(8);
  const reset = (touched: number) => {
    while (touched !== 0) {
      const c = 31 - Math.clz32(touched);
      counts[c] = 0;
      touched &= ~(1 << c);
    }
  };
  return (bytes, start, end) => {
    if (end - start < shortest) return false;
    let touched = 0;
    for (let i = start; i < end; i++) {
      let m = table[bytes[i] as number] as number;
      if (m === 0) continue;
      touched |= m;
      while (m !== 0) {
        const c = 31 - Math.clz32(m);
        const n = (counts[c] as number) + 1;
        if (n >= (mins[c] as number)) {
          reset(touched);
          return true;
        }
        counts[c] = n;
        m &= ~(1 << c);
      }
    }
    if (touched !== 0) reset(touched);
    return false;
  };
}
