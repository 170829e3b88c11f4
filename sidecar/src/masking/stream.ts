// Streaming masking for chunked bodies (text/*, server-sent events). A value split across chunks
// must never be emitted in part, so text is held back until it can be masked as a whole:
//   text mode — release everything before the earliest place where a value may still be in the
//     making (each detector says where: the last word for token-shaped values, a run of digit
//     groups for cards, two capitals and digits for an IBAN, …; never more than its maxLength), so
//     prose streamed in small pieces comes out in pieces of about the same size; a PEM private key
//     is held from its BEGIN until its END line; past maxHoldBytes the held block is replaced as a
//     whole and the rest of the key is dropped up to its END (fail closed).
//   sse mode — release each complete event (ended by a blank line), its data masked as JSON when
//     it parses, else as text. An event that outgrows maxHoldBytes is released line by line in
//     text mode instead (detectors still apply; JSON field rules cannot, the JSON is incomplete).
// Concatenated output equals masking the whole body at once, as long as nothing exceeds
// maxHoldBytes (then the PEM block is always redacted, whatever the rule's strategy). Keep
// maxHoldBytes at least twice masker.textWindow (~34K with the JWT detector; the default is
// 256 KiB): a smaller hold shrinks the window and a value longer than it could be cut mid-line.
import { isTokenChar } from "./detectors/chars.ts";
import { nextPemBlock } from "./detectors/private-key.ts";
import type { Finding } from "./detectors/types.ts";
import type { Masker, MaskFinding } from "./masker.ts";
import { createEventSplitter, maskSseEvent } from "./sse.ts";

export interface StreamMaskerOptions {
  mode?: "text" | "sse";
  /** Most text held back waiting for a value's end (UTF-16 code units). Default 256 KiB, minimum 1 KiB. */
  maxHoldBytes?: number;
  /** Called with what was masked, as it is masked (for audit counts and metrics). */
  onFindings?: (findings: MaskFinding[]) => void;
}

export interface StreamMasker {
  /** Text safe to emit now (possibly ""). */
  push(chunk: string): string;
  /** Everything still held, masked. The stream must not be pushed to afterwards. */
  end(): string;
}

export const DEFAULT_MAX_HOLD = 256 * 1024;

export function createStreamMasker(masker: Masker, options: StreamMaskerOptions = {}): StreamMasker {
  const maxHold = Math.max(1024, options.maxHoldBytes ?? DEFAULT_MAX_HOLD);
  const report = (f: MaskFinding[]) => {
    if (f.length > 0) options.onFindings?.(f);
  };
  return options.mode === "sse" ? sseStream(masker, maxHold, report) : textStream(masker, maxHold, report);
}

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;

// Note on cost: `pending += chunk` builds a rope that V8 only flattens when it is read, so
// returning early (no newline, no END marker in the new chunk) keeps small-chunk streams linear.
function textStream(masker: Masker, maxHold: number, report: (f: MaskFinding[]) => void): StreamMasker {
  const detectors = masker.textDetectors;
  if (detectors.length === 0) return { push: (chunk) => chunk, end: () => "" };
  const pem = detectors.includes("privateKey");
  // Most text held back for a value in the making (maxHold shrinks it), and the released text
  // kept as left context after a mid-line release, so a value just after the cut still sees its
  // label or URL scheme.
  const window = Math.floor(maxHold / 2);
  const keep = Math.min(masker.textLookBehind, window);

  let pending = ""; // received, not yet emitted
  // Pending length from which releasing is worth trying again: while a long value (a token of
  // thousands of characters) trickles in, it is rescanned when it grew by a quarter, not per chunk.
  let retryAt = 0;
  let context = ""; // tail of emitted raw text, kept only when a release ended mid-line
  // `pending` starts with a PEM block whose END has not arrived; `tail` ends the received text.
  let open: { endMarker: string; tail: string } | null = null;
  // An oversized key was replaced; its remainder is dropped up to the END marker.
  let discard: { endMarker: string; tail: string } | null = null;

  /**
   * The released text a later value may still look back at: the detectors' look-behind, and, when
   * the cut fell inside a run of non-space characters (a run longer than a detector's reach), the
   * released part of that run too.
   */
  function keptContext(released: string): string {
    let from = released.length - keep;
    if (pending.length > 0 && isTokenChar(pending.charCodeAt(0))) {
      const floor = Math.max(0, released.length - masker.textWindow);
      let r = released.length;
      while (r > floor && isTokenChar(released.charCodeAt(r - 1))) r--;
      from = Math.min(from, r);
    }
    return from <= 0 ? released : released.slice(from);
  }

  function release(final: boolean): string {
    const full = context + pending;
    const shift = context.length;
    let c = pending.length;
    if (!final) c = Math.max(0, masker.holdFrom(full) - shift, pending.length - window);
    const found: Finding[] = [];
    for (const f of masker.detect(full)) {
      if (f.end <= shift) continue; // emitted with an earlier release
      found.push({ ...f, start: Math.max(0, f.start - shift), end: f.end - shift });
    }
    let block: { start: number; endMarker: string } | null = null;
    if (pem && !final) {
      for (let b = nextPemBlock(full, 0); b; b = b.end < 0 ? null : nextPemBlock(full, b.end))
        if (b.end < 0) block = { start: Math.max(0, b.start - shift), endMarker: b.endMarker };
      if (block) {
        // The block's finding may have merged with an overlapping one that starts earlier.
        for (const f of found) if (f.start <= block.start && f.end > block.start) block.start = f.start;
        c = Math.min(c, block.start);
      }
    }
    for (const f of found) if (f.start < c && f.end > c) c = f.start;
    if (c > 0 && c < pending.length && isHighSurrogate(pending.charCodeAt(c - 1))) c--;
    let out = "";
    if (c > 0) {
      const emitted = pending.slice(0, c);
      const r = masker.apply(
        emitted,
        found.filter((f) => f.end <= c),
      );
      report(r.findings);
      out = r.text;
      pending = pending.slice(c);
      context = emitted.endsWith("\n") ? "" : keptContext(context + emitted);
    }
    if (block && block.start === c)
      open = { endMarker: block.endMarker, tail: pending.slice(-block.endMarker.length) };
    return out + (open ? holdOrFailClosed() : "");
  }

  /** While a key is open: keep holding, or past maxHold replace all of it (fail closed). */
  function holdOrFailClosed(): string {
    if (!open || pending.length <= maxHold) return "";
    const r = masker.apply(pending, [{ start: 0, end: pending.length, detector: "privateKey" }]);
    report(r.findings);
    discard = { endMarker: open.endMarker, tail: open.tail };
    pending = "";
    context = "";
    open = null;
    return r.text;
  }

  return {
    push(chunk) {
      let input = chunk;
      if (discard) {
        const probe = discard.tail + input;
        const at = probe.indexOf(discard.endMarker);
        if (at < 0) {
          discard.tail = probe.slice(-discard.endMarker.length);
          return "";
        }
        input = probe.slice(at + discard.endMarker.length);
        discard = null;
      }
      pending += input;
      if (open) {
        const probe = open.tail + input;
        if (probe.indexOf(open.endMarker) < 0) {
          open.tail = probe.slice(-open.endMarker.length);
          return holdOrFailClosed();
        }
        open = null;
        return release(false);
      }
      if (pending.length < retryAt && !input.includes("\n")) return "";
      const out = release(false);
      retryAt = pending.length > 256 ? pending.length + (pending.length >> 2) : 0;
      return out;
    },
    end() {
      if (discard) return "";
      open = null;
      const out = release(true);
      pending = "";
      return out;
    },
  };
}

function sseStream(masker: Masker, maxHold: number, report: (f: MaskFinding[]) => void): StreamMasker {
  const splitter = createEventSplitter();
  let pending = "";
  let pendingStart = 0; // stream offset of pending[0]
  let overflow: StreamMasker | null = null; // text-mode masking of an event that outgrew maxHold

  function takeEvents(ends: number[]): string {
    let out = "";
    for (const end of ends) {
      const n = end - pendingStart;
      const raw = pending.slice(0, n);
      pending = pending.slice(n);
      pendingStart = end;
      if (overflow) {
        out += overflow.push(raw) + overflow.end();
        overflow = null;
      } else {
        const r = maskSseEvent(masker, raw);
        report(r.findings);
        out += r.text;
      }
    }
    return out;
  }

  return {
    push(chunk) {
      pending += chunk;
      let out = takeEvents(splitter.feed(chunk));
      if (!overflow && pending.length > maxHold) overflow = textStream(masker, maxHold, report);
      if (overflow && pending.length > 0) {
        // The splitter tracks offsets, so an oversized event's text can move on to the text
        // masker now; the event's end still closes it.
        out += overflow.push(pending);
        pendingStart += pending.length;
        pending = "";
      }
      return out;
    },
    end() {
      let out = takeEvents(splitter.flush());
      if (overflow) out += overflow.push(pending) + overflow.end();
      else if (pending !== "") {
        const r = maskSseEvent(masker, pending);
        report(r.findings);
        out += r.text;
      }
      pending = "";
      return out;
    },
  };
}
