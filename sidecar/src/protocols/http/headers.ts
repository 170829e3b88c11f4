// Header rewriting between the agent and the upstream. Hop-by-hop headers (RFC 9110 §7.6.1) and
// the ones the Connection header names are never relayed; the identity header and any credential
// the agent sent are dropped before the sidecar's own credential goes in. So are the headers that
// authenticating proxies use to tell an upstream who the user is: an upstream behind one trusts
// them, and the agent could forge them. A connection's `userHeader` carries the verified user
// instead, set by the sidecar alone.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { IDENTITY_HEADER } from "../../identity/index.ts";
import { REASON_HEADER } from "./approval.ts";

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

/**
 * Identity assertions of common authenticating proxies (oauth2-proxy, the Kubernetes front proxy,
 * Grafana/Apache auth proxies, Pomerium, Cloudflare Access, Google IAP, AWS ALB, Azure EasyAuth,
 * Envoy's client-certificate header): never from the agent.
 */
const FORGEABLE_IDENTITY = new Set([
  "x-forwarded-user",
  "x-forwarded-email",
  "x-forwarded-groups",
  "x-forwarded-preferred-username",
  "x-forwarded-access-token",
  "x-auth-request-user",
  "x-auth-request-email",
  "x-auth-request-groups",
  "x-auth-request-preferred-username",
  "x-auth-request-access-token",
  "x-remote-user",
  "x-remote-group",
  "remote-user",
  "x-webauth-user",
  "x-webauth-email",
  "x-webauth-name",
  "x-pomerium-jwt-assertion",
  "cf-access-jwt-assertion",
  "cf-access-authenticated-user-email",
  "x-goog-authenticated-user-email",
  "x-goog-authenticated-user-id",
  "x-goog-iap-jwt-assertion",
  "x-amzn-oidc-data",
  "x-amzn-oidc-identity",
  "x-amzn-oidc-accesstoken",
  "x-forwarded-client-cert",
]);
const FORGEABLE_PREFIXES = ["x-remote-extra-", "x-pomerium-claim-", "x-ms-client-principal"];

export function isForgeableIdentityHeader(name: string): boolean {
  return FORGEABLE_IDENTITY.has(name) || FORGEABLE_PREFIXES.some((p) => name.startsWith(p));
}

/** Header names that a `Connection: a, b` header marks as hop-by-hop for this message. */
function connectionTokens(headers: IncomingHttpHeaders): Set<string> | undefined {
  const value = headers.connection;
  if (!value) return undefined;
  const out = new Set<string>();
  for (const token of String(value).split(",")) {
    const t = token.trim().toLowerCase();
    if (t) out.add(t);
  }
  return out;
}

// One pass over the headers, building a fresh object (no `delete`, which would turn the object
// into a slow dictionary that node then walks again while writing the request).
function stripHopByHop(headers: IncomingHttpHeaders, skip?: (name: string) => boolean): IncomingHttpHeaders {
  const listed = connectionTokens(headers);
  const out: IncomingHttpHeaders = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed?.has(name) || skip?.(name)) continue;
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
  /** The connection's `userHeader` and the verified end user (undefined: none verified). */
  user?: { header: string; name: string | undefined } | undefined;
}

/** Headers for the upstream request, in the shape node's IncomingMessage uses (http-proxy-3 reads them there). */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  opts: UpstreamHeaderOptions,
): IncomingHttpHeaders {
  const injected = opts.inject?.name.toLowerCase();
  const userHeader = opts.user?.header.toLowerCase();
  const out = stripHopByHop(
    incoming,
    (name) =>
      // The identity token and the approval reason are the sidecar's business; `100 Continue` was
      // answered to the agent once the request was allowed, so the upstream gets the body at
      // once; the agent's credentials give way to ours.
      name === IDENTITY_HEADER ||
      name === REASON_HEADER ||
      name === "expect" ||
      name === injected ||
      name === userHeader ||
      isForgeableIdentityHeader(name) ||
      opts.drop.includes(name),
  );
  out.host = opts.host;
  if (opts.acceptEncoding !== undefined) out["accept-encoding"] = opts.acceptEncoding;
  if (opts.websocket) {
    out.connection = "Upgrade";
    out.upgrade = "websocket";
  }
  if (opts.inject && injected !== undefined) out[injected] = opts.inject.value;
  if (userHeader !== undefined && opts.user?.name !== undefined) out[userHeader] = opts.user.name;
  return out;
}

/** Response headers for the agent: hop-by-hop removed; framing is left to node. */
export function downstreamResponseHeaders(upstream: IncomingHttpHeaders): OutgoingHttpHeaders {
  return stripHopByHop(upstream);
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
