// What a body is, for masking purposes, and how to undo its Content-Encoding. Masking reads text;
// bodies the sidecar cannot decode are refused when masking applies, never passed on unmasked.

import { isUtf8 } from "node:buffer";
import { createRequire } from "node:module";
import type { Transform } from "node:stream";

export type BodyKind = "json" | "text" | "sse" | "other";

/** Encodings the sidecar can decode. */
export const DECODABLE_ENCODINGS = "gzip, deflate, br";
const DECODABLE = ["gzip", "deflate", "br"];

/**
 * Accept-Encoding for the upstream when the response may have to be masked: what the agent
 * accepts and the sidecar can decode. A body the sidecar does not mask (a binary type) reaches
 * the agent as the upstream encoded it, so nothing the agent did not ask for is offered.
 */
export function upstreamAcceptEncoding(agent: string | undefined): string {
  const accepted = new Set<string>();
  for (const part of (agent ?? "").split(",")) {
    const [coding = "", ...params] = part.split(";").map((p) => p.trim().toLowerCase());
    if (params.some((p) => /^q=0(\.0*)?$/.test(p))) continue;
    if (coding === "*") for (const c of DECODABLE) accepted.add(c);
    else if (coding === "x-gzip") accepted.add("gzip");
    else if (DECODABLE.includes(coding)) accepted.add(coding);
  }
  return accepted.size === 0 ? "identity" : DECODABLE.filter((c) => accepted.has(c)).join(", ");
}

export function mediaType(contentType: string | undefined): string {
  return (contentType ?? "").split(";", 1)[0]?.trim().toLowerCase() ?? "";
}

const TEXTUAL_APPLICATION = new Set([
  "application/x-ndjson",
  "application/jsonl",
  "application/xml",
  "application/javascript",
  "application/graphql",
  "application/x-www-form-urlencoded",
  "application/yaml",
]);

/** What a Content-Type claims. Masking decides by the bytes (`looksBinary`); this picks JSON vs text vs SSE. */
export function classify(contentType: string | undefined): BodyKind {
  const type = mediaType(contentType);
  if (type === "text/event-stream") return "sse";
  if (type === "application/json" || (type.startsWith("application/") && type.endsWith("+json")))
    return "json";
  if (type.startsWith("text/") || TEXTUAL_APPLICATION.has(type) || type.endsWith("+xml")) return "text";
  return "other";
}

/**
 * Whether bytes are not text: invalid UTF-8, or a control character no text format uses (NUL and
 * the C0 controls other than tab, line feed, form feed, carriage return and escape). With
 * `prefix`, a multi-byte character cut at the end is not held against the bytes. This, not the
 * declared Content-Type, decides whether a body is masked: a label is the sender's claim.
 */
export function looksBinary(bytes: Uint8Array, prefix = false): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0c && b !== 0x0d && b !== 0x1b) return true;
  }
  // A whole body: validated in place (no decoded copy); a prefix may end inside a character.
  if (!prefix) return !isUtf8(bytes);
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes, { stream: prefix });
    return false;
  } catch {
    return true;
  }
}

// zlib is loaded with the first encoded body a masking rule has to read, not at start: most
// sidecars never see one, and the module and its native state cost every pod memory.
let zlib: typeof import("node:zlib") | undefined;
const load = () => (zlib ??= createRequire(import.meta.url)("node:zlib") as typeof import("node:zlib"));

const DECODERS: Record<string, () => Transform> = {
  gzip: () => load().createGunzip(),
  "x-gzip": () => load().createGunzip(),
  deflate: () => load().createInflate(),
  br: () => load().createBrotliDecompress(),
  zstd: () => load().createZstdDecompress(),
};

/**
 * Decoders that undo `Content-Encoding` (applied in reverse order of the header), an empty list for
 * identity, or undefined when an encoding is not supported.
 */
export function decoders(contentEncoding: string | string[] | undefined): Transform[] | undefined {
  const raw = Array.isArray(contentEncoding) ? contentEncoding.join(",") : (contentEncoding ?? "");
  const codings = raw
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== "" && c !== "identity");
  const factories: (() => Transform)[] = [];
  for (const coding of codings.reverse()) {
    const factory = DECODERS[coding];
    if (!factory) return undefined;
    factories.push(factory);
  }
  return factories.map((f) => f());
}
