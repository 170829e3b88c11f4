// What the agent sees of a channel's stdout/stderr: bytes from the upstream, masked with the
// connection's response masking rules (text detectors: a terminal has no JSON fields or columns),
// and the same text for the recording.
//
// Without masking rules bytes pass through untouched (the recording gets them decoded as UTF-8,
// multi-byte characters split across packets intact). With rules the stream masker holds back the
// text that may still be part of a value (the last word, a number still arriving), so that a
// value split across packets is never sent in part. A terminal cannot wait for a value to end
// (a prompt ends in a word or a space), so text held for `idleMs` without more output is
// masked and released as it is: a secret whose halves arrive more than idleMs apart could escape
// detection — the price of an interactive terminal. Non-UTF-8 output is decoded with replacement
// characters when masking is on.
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

export function createOutputPipe(opts: OutputPipeOptions): OutputPipe {
  const decoder = new StringDecoder("utf8");
  const masker = opts.masker && opts.masker.textDetectors.length > 0 ? opts.masker : undefined;
  if (!masker) {
    return {
      write(chunk) {
        opts.emit(chunk);
        const text = decoder.write(chunk);
        if (text) opts.record(text);
      },
      end() {
        const text = decoder.end();
        if (text) opts.record(text);
      },
    };
  }
  const idleMs = opts.idleMs ?? 50;
  const fresh = () =>
    createStreamMasker(masker, { ...(opts.onFindings ? { onFindings: opts.onFindings } : {}) });
  let stream: StreamMasker = fresh();
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const send = (text: string) => {
    if (!text) return;
    opts.emit(Buffer.from(text, "utf8"));
    opts.record(text);
  };
  const flushHeld = () => {
    timer = undefined;
    if (ended) return;
    const held = stream.end();
    stream = fresh();
    send(held);
  };
  return {
    write(chunk) {
      if (ended) return;
      send(stream.push(decoder.write(chunk)));
      if (timer) clearTimeout(timer);
      timer = setTimeout(flushHeld, idleMs);
      timer.unref();
    },
    end() {
      if (ended) return;
      if (timer) clearTimeout(timer);
      ended = true;
      send(stream.push(decoder.end()) + stream.end());
    },
  };
}
