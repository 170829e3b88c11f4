// What the agent sees of a channel's stdout/stderr: bytes from the upstream, masked with the
// connection's response masking rules (text detectors: a terminal has no JSON fields or columns),
// and the same text for the recording.
//
// Masking never alters a byte it does not rewrite:
// - Without masking rules (or with `raw`) bytes pass through untouched.
// - While a stream is valid UTF-8 it is masked as text. The stream masker holds back the text that may
//   still be part of a value (the last word, a number still arriving), so that a value split
//   across packets is never sent in part. A terminal cannot wait for a value to end, so text held for `idleMs` without more output is masked and
//   released as it is: a secret whose halves arrive more than idleMs apart could escape detection
//   — the price of an interactive terminal.
// - From the first byte sequence that is not UTF-8 on, the stream is binary: it is scanned one
//   byte per character (latin1), so detectors still find ASCII values inside it (a key in a core
//   dump, a tarball of text files) and every byte outside a match is sent exactly as received.
//   Bytes are never decoded with replacement characters.
// The recording gets the emitted bytes decoded as UTF-8 (multi-byte characters split across
// packets intact).
import { isUtf8 } from "node:buffer";
import { StringDecoder } from "node:string_decoder";
import { createStreamMasker, type Masker, type MaskFinding, type StreamMasker } from "../../masking/index.ts";

export interface OutputPipe {
  write(chunk: Buffer): void;
  /** Releases anything held (end of stream). */
  end(): void;
}

export interface OutputPipeOptions {
  masker: Masker | undefined;
  /** Sends bytes to the agent. */
  emit(data: Buffer): void;
  /** Records the text the agent was sent. */
  record(text: string): void;
  onFindings?(findings: MaskFinding[]): void;
  /** Default 50 ms. */
  idleMs?: number;
}

/** Bytes at the end of `buf` that start a UTF-8 sequence the buffer does not complete. */
function incompleteTail(buf: Buffer): number {
  for (let back = 1; back <= Math.min(3, buf.length); back++) {
    const b = buf[buf.length - back] ?? 0;
    if ((b & 0xc0) === 0x80) continue; // continuation byte: look further back
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

export function createOutputPipe(opts: OutputPipeOptions): OutputPipe {
  const recordDecoder = new StringDecoder("utf8");
  const record = (b: Buffer) => {
    const text = recordDecoder.write(b);
    if (text) opts.record(text);
  };
  const emit = (b: Buffer) => {
    if (b.length === 0) return;
    opts.emit(b);
    record(b);
  };
  const masker = opts.masker && opts.masker.textDetectors.length > 0 ? opts.masker : undefined;
  if (!masker) {
    return {
      write: emit,
      end() {
        const text = recordDecoder.end();
        if (text) opts.record(text);
      },
    };
  }
  const idleMs = opts.idleMs ?? 50;
  const fresh = () =>
    createStreamMasker(masker, { ...(opts.onFindings ? { onFindings: opts.onFindings } : {}) });
  let stream: StreamMasker = fresh();
  let encoding: "utf8" | "latin1" = "utf8";
  /** UTF-8 mode: the start of a multi-byte character whose rest has not arrived yet. */
  let pending: Buffer = Buffer.alloc(0);
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const send = (text: string) => {
    if (text) emit(Buffer.from(text, encoding));
  };
  const flushHeld = () => {
    timer = undefined;
    if (ended) return;
    const held = stream.end();
    stream = fresh();
    send(held);
  };
  const push = (chunk: Buffer) => {
    if (encoding === "latin1") return send(stream.push(chunk.toString("latin1")));
    const all = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    const tail = incompleteTail(all);
    const whole = all.subarray(0, all.length - tail);
    if (isUtf8(whole)) {
      pending = Buffer.from(all.subarray(whole.length));
      return send(stream.push(whole.toString("utf8")));
    }
    // Not text: release what was held as the text it was, then scan the rest byte for byte.
    send(stream.end());
    stream = fresh();
    encoding = "latin1";
    pending = Buffer.alloc(0);
    send(stream.push(all.toString("latin1")));
  };
  return {
    write(chunk) {
      if (ended) return;
      push(chunk);
      if (timer) clearTimeout(timer);
      timer = setTimeout(flushHeld, idleMs);
      timer.unref();
    },
    end() {
      if (ended) return;
      if (timer) clearTimeout(timer);
      ended = true;
      // An incomplete character at the very end is not text: passed on as it came.
      const rest = stream.end();
      send(rest);
      if (pending.length) emit(pending);
      const text = recordDecoder.end();
      if (text) opts.record(text);
    },
  };
}
