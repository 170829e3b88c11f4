// Header rewriting between the agent and the upstream. Hop-by-hop headers (RFC 9110 §7.6.1) and
// the ones the Connection header names are never relayed; the identity header and any credential
// the agent sent are dropped before the sidecar's own credential goes in.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { IDENTITY_HEADER } from "../../identity/index.ts";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** Header names that a `Connection: a, b` header marks as hop-by-hop for this message. */
function connectionTokens(headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection;
  const out = new Set<string>();
  if (!value) return out;
  for (const token of String(value).split(",")) {
    const t = token.trim().toLowerCase();
    if (t) out.add(t);
  }
  return out;
}

function stripHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const listed = connectionTokens(headers);
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  return out;
}

export interface UpstreamHeaderOptions {
  /** Host header for the upstream. */
  host: string;
  /** Lower-case header names to drop (credentials the agent may have sent). */
  drop: readonly string[];
  /** The sidecar's credential, already formatted. */
  inject?: { name: string; value: string } | undefined;
  websocket: boolean;
  /** Overrides Accept-Encoding (when the sidecar must decode the response to mask it). */
  acceptEncoding?: string | undefined;
}

/** Headers for the upstream request, in the shape node's IncomingMessage uses (http-proxy-3 reads them there). */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  opts: UpstreamHeaderOptions,
): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = stripHopByHop(incoming);
  delete out[IDENTITY_HEADER];
  // The sidecar already answered `100 Continue` to the agent; the upstream gets the body at once.
  delete out.expect;
  for (const name of opts.drop) delete out[name];
  out.host = opts.host;
  if (opts.acceptEncoding !== undefined) out["accept-encoding"] = opts.acceptEncoding;
  if (opts.websocket) {
    out.connection = "Upgrade";
    out.upgrade = "websocket";
  }
  if (opts.inject) out[opts.inject.name.toLowerCase()] = opts.inject.value;
  return out;
}

/** Response headers for the agent: hop-by-hop removed; framing is left to node. */
export function downstreamResponseHeaders(upstream: IncomingHttpHeaders): OutgoingHttpHeaders {
  return { ...stripHopByHop(upstream) };
}

/** Whether the request carries a body whose length is not declared up front. */
export function isChunked(headers: IncomingHttpHeaders): boolean {
  return headers["transfer-encoding"] !== undefined;
}

/** The declared Content-Length, or undefined. A malformed value is reported as NaN. */
export function declaredLength(headers: IncomingHttpHeaders): number | undefined {
  const v = headers["content-length"];
  if (v === undefined) return undefined;
  return /^\d+$/.test(v) ? Number(v) : Number.NaN;
}
