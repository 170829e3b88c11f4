// pino JSON to stdout. Redaction is a second line of defence: code must not put secrets in logs in
// the first place, but if a header object slips into a log call its credentials are censored.
import { type Logger, pino } from "pino";

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

export function createLogger(
  opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  return pino(
    {
      name: opts.name ?? "airlock-sidecar",
      level: opts.level ?? process.env.AIRLOCK_LOG_LEVEL ?? "info",
      redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination ?? pino.destination({ sync: false }),
  );
}
