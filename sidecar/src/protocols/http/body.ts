// Bodies: byte limits for streamed bodies, bounded reading (after undoing Content-Encoding) for
// bodies the sidecar must see whole, and masking of a whole JSON or text body.
import { type Readable, Transform } from "node:stream";
import { type Masker, type MaskFinding, MaskingError, parseJsonLossless } from "../../masking/index.ts";

export const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;

export class BodyTooLargeError extends Error {}
export class BodyDecodeError extends Error {}

/**
 * Passes bytes through until more than `max` went by, then calls `onExceeded` once and swallows the
 * rest (the caller aborts the upstream request and answers 413).
 */
export function byteLimiter(max: number, onExceeded: () => void): Transform {
  let seen = 0;
  let exceeded = false;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (exceeded) return done();
      seen += chunk.length;
      if (seen > max) {
        exceeded = true;
        onExceeded();
        return done();
      }
      done(null, chunk);
    },
  });
}

/**
 * Reads `source` through `decoders` into one buffer of at most `max` bytes (counted after
 * decoding, so a compression bomb stops at the limit). Over the limit the source is paused and
 * unpiped, not destroyed: the caller may still answer on the same connection.
 */
export function readAll(source: Readable, decoders: readonly Transform[], max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    let stream: Readable = source;
    for (const d of decoders) stream = stream.pipe(d);
    const stop = (err: Error) => {
      if (settled) return;
      settled = true;
      source.unpipe();
      source.pause();
      for (const d of decoders) d.destroy();
      reject(err);
    };
    source.once("error", (err) => stop(err));
    source.once("aborted", () => stop(new Error("body aborted")));
    for (const d of decoders) d.once("error", (err) => stop(new BodyDecodeError(err.message)));
    stream.on("data", (chunk: Buffer) => {
      if (settled) return;
      size += chunk.length;
      if (size > max) stop(new BodyTooLargeError(`body larger than ${max} bytes`));
      else chunks.push(chunk);
    });
    stream.once("end", () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(chunks));
    });
  });
}

export interface MaskedBody {
  body: Buffer;
  findings: MaskFinding[];
}

/**
 * Masks a whole body: JSON with maskJson (lossless numbers), falling back to text when it does not
 * parse; text with maskText. Bodies are UTF-8. Throws MaskingError when the value cannot be masked
 * safely (JSON nested too deep), and the caller refuses the body.
 */
export function maskBody(masker: Masker, kind: "json" | "text", body: Buffer): MaskedBody {
  const text = body.toString("utf8");
  if (kind === "json") {
    let parsed: unknown;
    let ok = false;
    try {
      parsed = parseJsonLossless(text);
      ok = true;
    } catch {
      // Labelled JSON but is not: the text detectors still apply below.
    }
    if (ok) {
      const r = masker.maskJson(parsed);
      if (r.findings.length === 0) return { body, findings: [] };
      const out = JSON.stringify(r.value);
      if (out === undefined) throw new MaskingError("masked JSON did not serialize");
      return { body: Buffer.from(out, "utf8"), findings: r.findings };
    }
  }
  const r = masker.maskText(text);
  return r.findings.length === 0
    ? { body, findings: [] }
    : { body: Buffer.from(r.text, "utf8"), findings: r.findings };
}
