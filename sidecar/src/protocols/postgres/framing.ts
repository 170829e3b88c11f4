// Incremental message framing. Bytes arrive split at arbitrary boundaries; a frame is returned
// only once complete. Frames are zero-copy views of the received chunks when a message lies in
// one chunk, so bytes that are passed through are exactly the bytes received.
//
// Client→server: the startup phase has untyped packets (int32 length, int32 code: StartupMessage,
// SSLRequest, GSSENCRequest, CancelRequest); after StartupMessage every message is typed (type
// byte, int32 length). Sizes are checked from the header, before any body is buffered: an
// oversized message is refused without reading it.
import { ProtocolError, T } from "./protocol.ts";

export class Frame {
  /** Type byte; 0 for startup-phase packets. */
  readonly type: number;
  /** The whole message as received (header included). */
  readonly raw: Buffer;
  readonly #header: number;
  #payload: Buffer | undefined;

  constructor(type: number, raw: Buffer, header: number) {
    this.type = type;
    this.raw = raw;
    this.#header = header;
  }

  /** The payload after the header (after the int32 length; startup: after length, includes the code). */
  get payload(): Buffer {
    // Made on first use: most messages are passed through as `raw` without reading it.
    this.#payload ??= this.raw.subarray(this.#header);
    return this.#payload;
  }
}

export interface FrontendLimits {
  /** Largest startup-phase packet (PostgreSQL itself allows 10000 bytes). */
  maxStartupBytes: number;
  /** Largest Query or Parse message payload. */
  maxQueryBytes: number;
  /** Largest payload of any other message (Bind parameters, CopyData, ...). */
  maxMessageBytes: number;
}

export const DEFAULT_LIMITS: FrontendLimits = {
  maxStartupBytes: 10_000,
  maxQueryBytes: 16 * 1024 * 1024,
  maxMessageBytes: 1024 * 1024 * 1024,
};

/** A chunk queue with cheap head access. */
class Chunks {
  #chunks: Buffer[] = [];
  #head = 0; // offset into chunks[0]
  length = 0;

  push(chunk: Buffer) {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Byte at offset i from the head (i < length). */
  byteAt(i: number): number {
    let off = this.#head + i;
    const first = this.#chunks[0] as Buffer;
    if (off < first.length) return first[off] as number;
    for (const c of this.#chunks) {
      if (off < c.length) return c[off] as number;
      off -= c.length;
    }
    throw new RangeError("byteAt beyond buffered data");
  }

  int32At(i: number): number {
    const first = this.#chunks[0] as Buffer;
    const off = this.#head + i;
    if (off + 4 <= first.length) return first.readInt32BE(off);
    return (
      (this.byteAt(i) << 24) | (this.byteAt(i + 1) << 16) | (this.byteAt(i + 2) << 8) | this.byteAt(i + 3) | 0
    );
  }

  /** The first chunk (undefined when empty) and the offset of the head in it. */
  get first(): Buffer | undefined {
    return this.#chunks[0];
  }
  get head(): number {
    return this.#head;
  }

  /** Removes and returns the first n bytes (n <= length); a view when they lie in one chunk. */
  take(n: number): Buffer {
    const first = this.#chunks[0] as Buffer;
    if (first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n);
      this.#head += n;
      if (this.#head === first.length) {
        this.#chunks.shift();
        this.#head = 0;
      }
      this.length -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let o = 0;
    while (o < n) {
      const c = this.#chunks[0] as Buffer;
      const avail = c.length - this.#head;
      const k = Math.min(avail, n - o);
      c.copy(out, o, this.#head, this.#head + k);
      o += k;
      this.#head += k;
      if (this.#head === c.length) {
        this.#chunks.shift();
        this.#head = 0;
      }
    }
    this.length -= n;
    return out;
  }
}

export class FrontendFramer {
  readonly #limits: FrontendLimits;
  readonly #chunks = new Chunks();
  #startup = true;

  constructor(limits: Partial<FrontendLimits> = {}) {
    this.#limits = { ...DEFAULT_LIMITS, ...limits };
  }

  /** Bytes received and not yet returned as frames. */
  get buffered(): number {
    return this.#chunks.length;
  }

  /** After a StartupMessage: every later message is typed. */
  endStartup() {
    this.#startup = false;
  }

  get inStartup(): boolean {
    return this.#startup;
  }

  push(chunk: Buffer) {
    this.#chunks.push(chunk);
  }

  /** The next complete frame, undefined when more bytes are needed; throws ProtocolError. */
  next(): Frame | undefined {
    const c = this.#chunks;
    if (this.#startup) {
      if (c.length < 4) return undefined;
      const len = c.int32At(0);
      if (len < 8) throw new ProtocolError(`invalid startup packet length ${len}`);
      if (len > this.#limits.maxStartupBytes)
        throw new ProtocolError(`startup packet of ${len} bytes is too large`);
      if (c.length < len) return undefined;
      return new Frame(0, c.take(len), 4);
    }
    if (c.length < 5) return undefined;
    const type = c.byteAt(0);
    const len = c.int32At(1);
    if (len < 4) throw new ProtocolError(`invalid message length ${len} for message type ${typeName(type)}`);
    const limit =
      type === T.Query || type === T.Parse ? this.#limits.maxQueryBytes : this.#limits.maxMessageBytes;
    if (len - 4 > limit)
      throw new ProtocolError(
        `${typeName(type)} message of ${len - 4} bytes exceeds the sidecar's limit of ${limit} bytes`,
        "54000",
      );
    if (c.length < 1 + len) return undefined;
    return new Frame(type, c.take(1 + len), 5);
  }
}

/** Server→client framing: typed messages only. The upstream is trusted, but still bounded. */
export class BackendFramer {
  readonly #chunks = new Chunks();
  readonly #max: number;

  constructor(maxMessageBytes = 1024 * 1024 * 1024 + 1024) {
    this.#max = maxMessageBytes;
  }

  get buffered(): number {
    return this.#chunks.length;
  }

  push(chunk: Buffer) {
    this.#chunks.push(chunk);
  }

  next(): Frame | undefined {
    const c = this.#chunks;
    if (c.length < 5) return undefined;
    const type = c.byteAt(0);
    const len = c.int32At(1);
    if (!this.#validLength(len)) throw new ProtocolError(`upstream sent an invalid message length ${len}`);
    if (c.length < 1 + len) return undefined;
    return new Frame(type, c.take(1 + len), 5);
  }

  /**
   * The complete messages of `type` at the head that lie in the first received chunk, as one view
   * and their count; undefined when the next message is not one (or not complete in that chunk:
   * `next()` assembles it). A message whose length is invalid ends the run, for `next()` to refuse.
   */
  takeRun(
    type: number,
    unchanged?: (buf: Buffer, payloadStart: number, end: number) => boolean,
  ): { raw: Buffer; count: number } | undefined {
    const c = this.#chunks;
    const first = c.first;
    if (!first) return undefined;
    const start = c.head;
    let off = start;
    let count = 0;
    while (off + 5 <= first.length && first[off] === type) {
      const len = first.readInt32BE(off + 1);
      if (!this.#validLength(len) || off + 1 + len > first.length) break;
      if (unchanged && !unchanged(first, off + 5, off + 1 + len)) break;
      off += 1 + len;
      count++;
    }
    return count === 0 ? undefined : { raw: c.take(off - start), count };
  }

  #validLength(len: number): boolean {
    return len >= 4 && len - 4 <= this.#max;
  }
}

export function typeName(type: number): string {
  return type >= 0x20 && type < 0x7f
    ? `'${String.fromCharCode(type)}'`
    : `0x${type.toString(16).padStart(2, "0")}`;
}
