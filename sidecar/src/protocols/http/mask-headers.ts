// Masking of what travels beside a body: header values (both directions) and the query string
// (requests), when the connection has masking for that direction. Only value detectors apply
// (field rules are JSON paths). Framing and content negotiation headers are left alone: masking
// them would break the exchange without hiding anything.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { Masker, MaskFinding } from "../../masking/index.ts";

const STRUCTURAL = new Set([
  "host",
  "content-length",
  "content-type",
  "content-encoding",
  "transfer-encoding",
  "accept",
  "accept-encoding",
  "accept-language",
  "connection",
  "upgrade",
  "date",
  "etag",
  "last-modified",
  "cache-control",
  "expires",
  "vary",
  "age",
  "sec-websocket-key",
  "sec-websocket-accept",
  "sec-websocket-version",
]);

/** Masks header values in place, except `keep` and the structural ones; returns the findings. */
export function maskHeaderValues(
  masker: Masker,
  headers: IncomingHttpHeaders | OutgoingHttpHeaders,
  keep: readonly string[] = [],
): MaskFinding[] {
  const findings: MaskFinding[] = [];
  const one = (v: string) => {
    const r = masker.maskText(v);
    if (r.findings.length === 0) return v;
    findings.push(...r.findings);
    return r.text;
  };
  for (const name of Object.keys(headers)) {
    if (STRUCTURAL.has(name) || keep.includes(name)) continue;
    const value = headers[name];
    if (typeof value === "string") headers[name] = one(value);
    else if (Array.isArray(value)) headers[name] = value.map((v) => one(String(v)));
  }
  return findings;
}

function decodeComponent(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw.replaceAll("+", " "));
  } catch {
    return undefined;
  }
}

/**
 * Masks the names and values of a query string (`?a=b&c=d`, or ""), each decoded first so that an
 * escaped value (`ada%40example.com`) is seen; pairs with nothing to mask are kept byte for byte.
 */
export function maskQuery(masker: Masker, query: string): { query: string; findings: MaskFinding[] } {
  if (query.length <= 1) return { query, findings: [] };
  const findings: MaskFinding[] = [];
  const part = (raw: string) => {
    const decoded = decodeComponent(raw);
    const r = masker.maskText(decoded ?? raw);
    if (r.findings.length === 0) return raw;
    findings.push(...r.findings);
    return encodeURIComponent(r.text);
  };
  const pairs = query
    .slice(1)
    .split("&")
    .map((pair) => {
      const eq = pair.indexOf("=");
      return eq < 0 ? part(pair) : `${part(pair.slice(0, eq))}=${part(pair.slice(eq + 1))}`;
    });
  return { query: `?${pairs.join("&")}`, findings };
}
