// pino JSON to stdout (batched per event-loop turn: line-output.ts). Redaction is a second line of defence: code must not put secrets in logs in
// the first place, but if a header object slips into a log call its credentials are censored.
import { type Logger, pino } from "pino";
import { stdoutLineOutput } from "./line-output.ts";

export const REDACT_PATHS = [
  "*.authorization",
  "*.Authorization",
  "*.headers.authorization",
  "*.headers.cookie",
  '*.headers["x-api-key"]',
  '*.headers["x-airlock-identity"]',
  "*.password",
  "*.token",
  "*.secret",
];

// pino's isoTime formats a new Date on every line; at thousands of audit lines a second most of
// them share a millisecond, so the formatted value is reused within one.
let lastMs = -1;
let lastIso = "";
let lastTime = "";
function refreshTime(): void {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastIso = new Date(now).toISOString();
    lastTime = `,"time":"${lastIso}"`;
  }
}

/** Now as an ISO string (millisecond resolution, formatted once per millisecond). */
export function isoNow(): string {
  refreshTime();
  return lastIso;
}

/** pino's time fragment (`,"time":"…"`) for now. */
export function isoTime(): string {
  refreshTime();
  return lastTime;
}

export function createLogger(
  opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  return pino(
    {
      name: opts.name ?? "airlock-sidecar",
      level: opts.level ?? process.env.AIRLOCK_LOG_LEVEL ?? "info",
      redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
      base: undefined,
      timestamp: isoTime,
    },
    opts.destination ?? stdoutLineOutput(),
  );
}
