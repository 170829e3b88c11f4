// Upstream failures, reduced to a bounded reason (metric label) and an error code (audit), never a
// message that could carry request data.
export interface UpstreamFailure {
  /** tls | connect | timeout | reset | error */
  reason: string;
  /** `reason:CODE`, for the audit event. */
  detail: string;
  status: 502 | 504;
}

const TLS_CODE = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|DEPTH_ZERO|ERR_TLS|ERR_SSL|HOSTNAME|ALTNAME/;
const CONNECT_CODES = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EADDRNOTAVAIL",
]);
const TIMEOUT_CODES = new Set(["ECONNECT_TIMEOUT", "ETIMEDOUT", "ESOCKETTIMEDOUT"]);

export function classifyUpstreamError(err: unknown, timedOut = false): UpstreamFailure {
  const raw = (err as { code?: unknown } | undefined)?.code;
  const code = typeof raw === "string" && /^[A-Z0-9_]{1,64}$/.test(raw) ? raw : "UNKNOWN";
  let reason = "error";
  if (timedOut || TIMEOUT_CODES.has(code)) reason = "timeout";
  else if (TLS_CODE.test(code)) reason = "tls";
  else if (CONNECT_CODES.has(code)) reason = "connect";
  else if (code === "ECONNRESET" || code === "EPIPE") reason = "reset";
  return { reason, detail: `${reason}:${code}`, status: reason === "timeout" ? 504 : 502 };
}
