// The recording formats, shared by the writer (recorder.ts) and the replay tool (read.ts, the CLI).
//
// Terminal sessions (SSH) are asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/):
// a header object, then events `[seconds, code, data]` with code "o" (output the agent saw, after
// masking), "r" (resize, "COLSxROWS") and "m" (marker: a channel opened or closed, e.g.
// `exec: ls -la`, `exit 0`). Input ("i") is not recorded: with a terminal the shell echoes what is
// typed (so it is in "o"), and what it does not echo — passwords at prompts — must not be kept.
//
// Operation sessions (SQL, HTTP) are JSON lines: a header, then one entry per operation in order.
//
// On stdout (the default destination) every piece is one pino JSON line marked
// `"recording": true` with the session id, the format, a sequence number and one of `header`,
// `events` (a chunk of asciicast events), `entry` (one operation) or `end`. In a directory the
// same content is `<session>.cast` (a standard asciicast file, playable by asciinema) or
// `<session>.jsonl` (header line, then entries).

export const RECORDING_SCHEMA_VERSION = 1;

export type RecordingFormat = "asciicast" | "jsonl";

export interface AsciicastHeader {
  version: 2;
  width: number;
  height: number;
  /** Unix seconds when the session started. */
  timestamp: number;
  title?: string;
  env?: Record<string, string>;
  /** Airlock's own metadata (players ignore unknown header keys). */
  airlock?: SessionInfo;
}

export type AsciicastCode = "o" | "i" | "r" | "m";
export type AsciicastEvent = [number, AsciicastCode, string];

/** Who and where, for `sessions list` (stdout lines and the jsonl header carry it). */
export interface SessionInfo {
  session: string;
  protocol: "ssh" | "postgres" | "http";
  connection: string;
  /** ISO time the session started. */
  started: string;
  identity?: { serviceAccount: string; pod?: string; namespace?: string; user?: string };
}

export interface OperationHeader extends SessionInfo {
  format: "jsonl";
  version: 1;
}

/** One operation of a SQL or HTTP session, in order. */
export interface OperationEntry {
  /** Seconds since the session started. */
  t: number;
  /** ISO time. */
  time: string;
  /** Operation summary as in audit events (kind, method/path, statement kinds, command...). */
  operation: Record<string, unknown>;
  decision: { action: string; rule?: string; policy?: string; reason?: string };
  /** What came of it: upstream status, error, rows, exit status. */
  outcome?: Record<string, unknown>;
  masked?: Record<string, number>;
  durationMs?: number;
  /** Free text the guard chose to keep (e.g. a statement text), already masked by the caller. */
  detail?: string;
}

/** A recording line on the stdout audit stream (besides pino's own fields). */
export interface RecordingLine {
  recording: true;
  v: number;
  session: string;
  format: RecordingFormat;
  seq: number;
  header?: AsciicastHeader | OperationHeader;
  events?: AsciicastEvent[];
  entry?: OperationEntry;
  end?: boolean;
  /** On `end`: seconds from start to end. */
  duration?: number;
}

export const fileNameFor = (session: string, format: RecordingFormat) =>
  `${session}.${format === "asciicast" ? "cast" : "jsonl"}`;

/** Seconds with microsecond precision, as asciinema writes them. */
export const seconds = (ms: number) => Math.round(ms * 1000) / 1_000_000;
