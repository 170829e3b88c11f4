// Session recording (docs/audit.md; format.ts has the formats). One Recorder per sidecar,
// shared by the protocol guards:
//
//   const rec = recorder.terminal({ session, connection, protocol: "ssh", identity, width, height });
//   rec.output(textTheAgentSaw); rec.resize(120, 40); rec.marker("exec: ls"); rec.end();
//
//   recorder.operation(session, { connection, protocol: "http", operation, decision, outcome });
//   recorder.end(session);            // when the agent's connection closes
//
// Where recordings go is the connection's policy `audit` (recordSessions, destination, directory):
// stdout by default, as `"recording": true` JSON lines through the sidecar's logger, so that the
// cluster's log pipeline keeps them next to the audit events; or files in `audit.directory`. A
// directory that cannot be written is reported once and the session continues on stdout: a
// recording is never silently dropped, and a full disk does not take the agent's session down.
import { createWriteStream, mkdirSync, type WriteStream } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { type DestinationStream, type Logger, pino } from "pino";
import { json, num, quoted } from "../audit/line.ts";
import type { CompiledConnection } from "../policy/compile.ts";
import { isoNow, isoTime } from "../telemetry/logger.ts";
import {
  type AsciicastEvent,
  type AsciicastHeader,
  fileNameFor,
  type OperationEntry,
  type OperationHeader,
  RECORDING_SCHEMA_VERSION,
  type RecordingFormat,
  type SessionInfo,
  seconds,
} from "./format.ts";

export interface RecordingSettings {
  enabled: boolean;
  destination: "stdout" | "file";
  /** Required for destination file. */
  directory?: string;
}

export type RecordingSettingsResolver = (connection: CompiledConnection) => RecordingSettings;

/** The CRD defaults: record, to stdout. */
export const DEFAULT_RECORDING_SETTINGS: RecordingSettings = { enabled: true, destination: "stdout" };

export interface RecorderOptions {
  logger: Logger;
  /** Default: DEFAULT_RECORDING_SETTINGS for every connection. */
  settingsFor?: RecordingSettingsResolver;
  /** Terminal events are written in chunks: at most this long after they happened (default 200 ms)... */
  flushMs?: number;
  /** ...or once this much output is pending (default 16 KiB). */
  chunkBytes?: number;
}

export interface TerminalInit {
  session: string;
  connection: CompiledConnection;
  protocol: "ssh";
  identity?: SessionInfo["identity"];
  width?: number;
  height?: number;
  env?: Record<string, string>;
  title?: string;
}

export interface TerminalRecording {
  readonly enabled: boolean;
  readonly session: string;
  /** Text the agent was sent (already masked). */
  output(text: string): void;
  /** A label in the timeline (`exec: ...`, `exit 0`). */
  marker(label: string): void;
  resize(cols: number, rows: number): void;
  /** Sets the size the recording starts with, if nothing was recorded yet (first pty request). */
  setInitialSize(cols: number, rows: number): void;
  /** Flushes and closes the recording; resolves once it is written. */
  end(): Promise<void>;
}

export interface OperationRecord {
  connection: CompiledConnection;
  protocol: "postgres" | "http" | "ssh";
  identity?: SessionInfo["identity"];
  operation: OperationEntry["operation"];
  decision: OperationEntry["decision"];
  outcome?: OperationEntry["outcome"];
  masked?: OperationEntry["masked"];
  durationMs?: number;
  detail?: string;
}

export interface Recorder {
  terminal(init: TerminalInit): TerminalRecording;
  /**
   * Whether operations on `connection` are written as a recording of their own: to a file. On
   * stdout they are not: the session's audit lines, on the same stream, are its recording (the
   * replay tool reads them), and writing each operation twice cost as much as the audit itself.
   */
  recordsOperations(connection: CompiledConnection): boolean;
  /** Appends an operation to the session's JSON-lines recording file (opened on first use). */
  operation(session: string, record: OperationRecord): void;
  /** Ends the session's JSON-lines recording, if any. */
  end(session: string): Promise<void>;
  /** Flushes and ends every open recording (sidecar shutdown). */
  close(): Promise<void>;
}

interface Sink {
  header(header: AsciicastHeader | OperationHeader): void;
  events(events: AsciicastEvent[]): void;
  entry(entry: OperationEntry): void;
  end(duration: number): Promise<void>;
}

function stdoutSink(log: Logger, session: string, format: RecordingFormat): Sink {
  let seq = 0;
  const write = (fields: Record<string, unknown>) =>
    log.info({ session, format, seq: seq++, ...fields }, `recording ${session}`);
  // SQL and HTTP entries come once per operation: written as the line pino would write, by hand
  // (recordingEntryLine), straight to the logger's stream.
  const stream = (log as unknown as Record<symbol, DestinationStream | undefined>)[pino.symbols.streamSym];
  const head = `,"recording":true,"v":${RECORDING_SCHEMA_VERSION},"session":${quoted(session)},"format":${quoted(format)},"seq":`;
  const msg = quoted(`recording ${session}`);
  return {
    header: (header) => write({ header }),
    events: (events) => write({ events }),
    entry: (entry) => {
      if (!stream) return write({ entry });
      stream.write(`{"level":30${isoTime()}${head}${seq++},"entry":${entryJson(entry)},"msg":${msg}}\n`);
    },
    async end(duration) {
      write({ end: true, duration });
    },
  };
}

function hasKeys(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

/** An operation entry as JSON (field order as written by JSON.stringify of the entry object). */
export function entryJson(e: OperationEntry): string {
  let out = `{"t":${num(e.t)},"time":${JSON.stringify(e.time)},"operation":${json(e.operation)},"decision":${json(e.decision)}`;
  if (e.outcome !== undefined) out += `,"outcome":${JSON.stringify(e.outcome)}`;
  if (e.masked !== undefined) out += `,"masked":${JSON.stringify(e.masked)}`;
  if (e.durationMs !== undefined) out += `,"durationMs":${num(e.durationMs)}`;
  if (e.detail !== undefined) out += `,"detail":${JSON.stringify(e.detail)}`;
  return `${out}}`;
}

/** A file sink that falls back to stdout (re-sending the header) if the file cannot be written. */
function fileSink(
  log: Logger,
  diag: Logger,
  directory: string,
  session: string,
  format: RecordingFormat,
): Sink {
  const path = join(directory, fileNameFor(session, format));
  let stream: WriteStream | undefined;
  let fallback: Sink | undefined;
  let header: AsciicastHeader | OperationHeader | undefined;
  const fail = (err: unknown) => {
    if (fallback) return;
    diag.error(
      { session, path, err: err instanceof Error ? err.message : String(err) },
      "cannot write session recording file; continuing on the stdout audit stream",
    );
    fallback = stdoutSink(log, session, format);
    if (header) fallback.header(header);
    stream?.destroy();
    stream = undefined;
  };
  try {
    mkdirSync(directory, { recursive: true, mode: 0o750 });
    stream = createWriteStream(path, { flags: "a", mode: 0o640 });
    stream.on("error", fail);
  } catch (err) {
    fail(err);
  }
  const line = (v: unknown) => {
    if (fallback || !stream) return false;
    stream.write(`${JSON.stringify(v)}\n`);
    return true;
  };
  return {
    header(h) {
      header = h;
      if (!line(h)) fallback?.header(h);
    },
    events(events) {
      if (fallback || !stream) return fallback?.events(events);
      stream.write(events.map((e) => `${JSON.stringify(e)}\n`).join(""));
    },
    entry(entry) {
      if (!line(entry)) fallback?.entry(entry);
    },
    async end(duration) {
      if (fallback) return fallback.end(duration);
      const s = stream;
      if (!s) return;
      await new Promise<void>((resolve) => {
        s.once("error", () => resolve());
        s.end(() => resolve());
      });
    },
  };
}

const noTerminal = (session: string): TerminalRecording => ({
  enabled: false,
  session,
  output: () => undefined,
  marker: () => undefined,
  resize: () => undefined,
  setInitialSize: () => undefined,
  end: async () => undefined,
});

export function createRecorder(options: RecorderOptions): Recorder {
  // Like audit lines, recording lines are built from a fixed schema and need no key redaction.
  const log = options.logger.child(
    { recording: true, v: RECORDING_SCHEMA_VERSION },
    { level: "info", redact: [] },
  );
  const settingsFor = options.settingsFor ?? (() => DEFAULT_RECORDING_SETTINGS);
  const flushMs = options.flushMs ?? 200;
  const chunkBytes = options.chunkBytes ?? 16 * 1024;
  const open = new Set<{ finish(): Promise<void> }>();
  const operations = new Map<string, { sink: Sink; start: number; finish(): Promise<void> }>();

  const sinkFor = (settings: RecordingSettings, session: string, format: RecordingFormat): Sink =>
    settings.destination === "file" && settings.directory
      ? fileSink(log, options.logger, settings.directory, session, format)
      : stdoutSink(log, session, format);

  // Asked once per proxied operation: kept per compiled connection (a policy update compiles new
  // connection objects, so a changed policy is read afresh).
  const settingsCache = new WeakMap<CompiledConnection, RecordingSettings>();
  const settingsOf = (connection: CompiledConnection): RecordingSettings => {
    let settings = settingsCache.get(connection);
    if (settings) return settings;
    try {
      settings = settingsFor(connection);
    } catch {
      settings = DEFAULT_RECORDING_SETTINGS;
    }
    settingsCache.set(connection, settings);
    return settings;
  };

  return {
    terminal(init) {
      const settings = settingsOf(init.connection);
      if (!settings.enabled) return noTerminal(init.session);
      const sink = sinkFor(settings, init.session, "asciicast");
      const started = performance.now();
      const startedWall = Date.now();
      let width = init.width ?? 80;
      let height = init.height ?? 24;
      let headerDone = false;
      let ended = false;
      let pending: AsciicastEvent[] = [];
      let pendingBytes = 0;
      let timer: NodeJS.Timeout | undefined;
      const info: SessionInfo = {
        session: init.session,
        protocol: init.protocol,
        connection: init.connection.spec.name,
        started: new Date(startedWall).toISOString(),
        ...(init.identity ? { identity: init.identity } : {}),
      };
      const writeHeader = () => {
        if (headerDone) return;
        headerDone = true;
        sink.header({
          version: 2,
          width,
          height,
          timestamp: Math.floor(startedWall / 1000),
          title: init.title ?? `airlock ${init.protocol} ${init.connection.spec.name} ${init.session}`,
          env: { TERM: "xterm-256color", SHELL: "/bin/sh", ...init.env },
          airlock: info,
        });
      };
      const flush = () => {
        if (timer) clearTimeout(timer);
        timer = undefined;
        writeHeader();
        if (pending.length === 0) return;
        const events = pending;
        pending = [];
        pendingBytes = 0;
        sink.events(events);
      };
      const add = (code: AsciicastEvent[1], data: string) => {
        if (ended) return;
        writeHeader();
        pending.push([seconds(performance.now() - started), code, data]);
        pendingBytes += data.length;
        if (pendingBytes >= chunkBytes) flush();
        else if (!timer) {
          timer = setTimeout(flush, flushMs);
          timer.unref();
        }
      };
      const entry = {
        async finish() {
          if (ended) return;
          flush();
          ended = true;
          open.delete(entry);
          await sink.end(seconds(performance.now() - started));
        },
      };
      open.add(entry);
      return {
        enabled: true,
        session: init.session,
        output: (text) => {
          if (text.length > 0) add("o", text);
        },
        marker: (label) => add("m", label),
        resize(cols, rows) {
          if (!headerDone) {
            width = cols;
            height = rows;
          } else add("r", `${cols}x${rows}`);
        },
        setInitialSize(cols, rows) {
          if (headerDone) return;
          width = cols;
          height = rows;
        },
        end: () => entry.finish(),
      };
    },

    recordsOperations(connection) {
      const settings = settingsOf(connection);
      return settings.enabled && settings.destination === "file" && settings.directory !== undefined;
    },

    operation(session, record) {
      let op = operations.get(session);
      if (!op) {
        const settings = settingsOf(record.connection);
        if (!settings.enabled) return;
        const sink = sinkFor(settings, session, "jsonl");
        const startedWall = Date.now();
        const info: SessionInfo = {
          session,
          protocol: record.protocol,
          connection: record.connection.spec.name,
          started: new Date(startedWall).toISOString(),
          ...(record.identity ? { identity: record.identity } : {}),
        };
        sink.header({ ...info, format: "jsonl", version: 1 });
        const start = performance.now();
        const created = {
          sink,
          start,
          async finish() {
            operations.delete(session);
            open.delete(created);
            await sink.end(seconds(performance.now() - start));
          },
        };
        op = created;
        operations.set(session, created);
        open.add(created);
      }
      // (Optional fields assigned, not spread: this runs once per proxied operation.)
      const entry: OperationEntry = {
        t: seconds(performance.now() - op.start),
        time: isoNow(),
        operation: record.operation,
        decision: record.decision,
      };
      if (record.outcome) entry.outcome = record.outcome;
      if (record.masked && hasKeys(record.masked)) entry.masked = record.masked;
      if (record.durationMs !== undefined) entry.durationMs = record.durationMs;
      if (record.detail !== undefined) entry.detail = record.detail;
      op.sink.entry(entry);
    },

    async end(session) {
      await operations.get(session)?.finish();
    },

    async close() {
      await Promise.all([...open].map((o) => o.finish()));
    },
  };
}
