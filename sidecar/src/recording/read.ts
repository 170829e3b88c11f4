// Reading recordings back for replay: from a recording directory (`<session>.cast`,
// `<session>.jsonl`), or from the sidecar's stdout (a saved log file, or pod logs) where
// recordings are `"recording": true` lines, interleaved with everything else and possibly
// prefixed by a timestamp (`kubectl logs --timestamps`). Audit events of the same stream are kept
// per session too, so sessions that were not recorded (or recorded elsewhere) still have a
// timeline of their operations.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type {
  AsciicastEvent,
  AsciicastHeader,
  OperationEntry,
  OperationHeader,
  RecordingFormat,
  RecordingLine,
} from "./format.ts";

export interface SessionSummary {
  session: string;
  protocol?: string;
  connection?: string;
  /** ISO time. */
  started?: string;
  /** `audit` when only audit events were found for the session. */
  format: RecordingFormat | "audit";
  /** Asciicast events, or operation entries, or audit events for `audit`. */
  count: number;
  /** Seconds, when the recording ended cleanly. */
  duration?: number;
  /** The end of the recording was seen (stdout recordings only; files have no end marker). */
  complete?: boolean;
  user?: string;
  /** Audit events (operations) seen for the session. */
  operations: number;
}

/** An audit event line as found in a log (schema in sidecar/src/audit/events.ts). */
export type AuditLine = Record<string, unknown> & { session: string };

export interface SessionRecording {
  summary: SessionSummary;
  header?: AsciicastHeader;
  events: AsciicastEvent[];
  operationHeader?: OperationHeader;
  entries: OperationEntry[];
  audit: AuditLine[];
}

export interface RecordingCatalog {
  list(): SessionSummary[];
  /** By full id or a unique prefix. */
  find(idOrPrefix: string): SessionRecording | { error: string };
}

function catalog(sessions: Map<string, SessionRecording>): RecordingCatalog {
  return {
    list: () =>
      [...sessions.values()]
        .map((s) => s.summary)
        .sort(
          (a, b) => (a.started ?? "").localeCompare(b.started ?? "") || a.session.localeCompare(b.session),
        ),
    find(id) {
      const exact = sessions.get(id);
      if (exact) return exact;
      const matches = [...sessions.keys()].filter((k) => k.startsWith(id));
      if (matches.length === 1) return sessions.get(matches[0] as string) as SessionRecording;
      if (matches.length > 1) return { error: `session id ${id} is ambiguous: ${matches.join(", ")}` };
      return { error: `no session ${id} in this source` };
    },
  };
}

/** Parses a JSON object from a log line, skipping a leading timestamp or prefix. */
function jsonOf(line: string): Record<string, unknown> | undefined {
  const at = line.indexOf("{");
  if (at < 0) return undefined;
  try {
    const v: unknown = JSON.parse(line.slice(at));
    return typeof v === "object" && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function fromHeader(rec: SessionRecording): void {
  const info = rec.header?.airlock ?? rec.operationHeader;
  if (!info) return;
  rec.summary.protocol = info.protocol;
  rec.summary.connection = info.connection;
  rec.summary.started = info.started;
  if (info.identity?.user) rec.summary.user = info.identity.user;
}

/** Sessions in the text of a sidecar log (JSON lines; other lines are ignored). */
export function catalogFromLog(text: string): RecordingCatalog {
  const lines = new Map<string, RecordingLine[]>();
  const audits = new Map<string, AuditLine[]>();
  for (const raw of text.split("\n")) {
    if (!raw.includes('"recording"') && !raw.includes('"audit"')) continue;
    const v = jsonOf(raw);
    if (!v || typeof v.session !== "string" || v.session === "") continue;
    if (v.recording === true) {
      const list = lines.get(v.session) ?? [];
      list.push(v as unknown as RecordingLine);
      lines.set(v.session, list);
    } else if (v.audit === true) {
      const list = audits.get(v.session) ?? [];
      list.push(v as AuditLine);
      audits.set(v.session, list);
    }
  }
  const sessions = new Map<string, SessionRecording>();
  for (const id of new Set([...lines.keys(), ...audits.keys()])) {
    const audit = audits.get(id) ?? [];
    const rec: SessionRecording = {
      summary: { session: id, format: "audit", count: 0, operations: audit.length },
      events: [],
      entries: [],
      audit,
    };
    // Sequence numbers restore the order, and drop duplicates (a log read twice, a retried ship).
    const seen = new Set<string>();
    const ordered = (lines.get(id) ?? [])
      .filter((l) => {
        const key = `${l.format}:${l.seq}`;
        if (seen.has(key)) return false;
        seen.add(key);
        return true;
      })
      .sort((a, b) => (a.format === b.format ? a.seq - b.seq : a.format.localeCompare(b.format)));
    for (const l of ordered) {
      rec.summary.format = l.format;
      if (l.header) {
        if (l.format === "asciicast") rec.header = l.header as AsciicastHeader;
        else rec.operationHeader = l.header as OperationHeader;
      }
      if (l.events) rec.events.push(...l.events);
      if (l.entry) rec.entries.push(l.entry);
      if (l.end) {
        rec.summary.complete = true;
        if (typeof l.duration === "number") rec.summary.duration = l.duration;
      }
    }
    if (rec.summary.format !== "audit" && !rec.summary.complete) rec.summary.complete = false;
    fromHeader(rec);
    if (rec.summary.format === "audit") {
      const first = audit[0];
      if (first) {
        if (typeof first.connection === "string") rec.summary.connection = first.connection;
        if (typeof first.protocol === "string") rec.summary.protocol = first.protocol;
        if (typeof first.time === "string") rec.summary.started = first.time;
        const identity = first.identity as { user?: unknown } | undefined;
        if (typeof identity?.user === "string") rec.summary.user = identity.user;
      }
    }
    rec.summary.count =
      rec.summary.format === "asciicast"
        ? rec.events.length
        : rec.summary.format === "jsonl"
          ? rec.entries.length
          : audit.length;
    sessions.set(id, rec);
  }
  return catalog(sessions);
}

/** Sessions recorded as files in `dir` (`<session>.cast`, `<session>.jsonl`). */
export async function catalogFromDirectory(dir: string): Promise<RecordingCatalog> {
  const sessions = new Map<string, SessionRecording>();
  for (const name of (await readdir(dir)).sort()) {
    const m = /^(.+)\.(cast|jsonl)$/.exec(name);
    if (!m) continue;
    const id = m[1] as string;
    const text = await readFile(join(dir, name), "utf8");
    const rows = text.split("\n").filter((l) => l.trim() !== "");
    const rec: SessionRecording = sessions.get(id) ?? {
      summary: { session: id, format: m[2] === "cast" ? "asciicast" : "jsonl", count: 0, operations: 0 },
      events: [],
      entries: [],
      audit: [],
    };
    for (const [i, row] of rows.entries()) {
      let v: unknown;
      try {
        v = JSON.parse(row);
      } catch {
        continue; // a torn last line (the sidecar was killed mid-write)
      }
      if (m[2] === "cast") {
        if (i === 0 && !Array.isArray(v)) rec.header = v as AsciicastHeader;
        else if (Array.isArray(v)) rec.events.push(v as AsciicastEvent);
      } else if (i === 0) rec.operationHeader = v as OperationHeader;
      else rec.entries.push(v as OperationEntry);
    }
    fromHeader(rec);
    rec.summary.count = m[2] === "cast" ? rec.events.length : rec.entries.length;
    // A directory holds no audit events: count the operations the recording itself shows (one
    // entry per SQL/HTTP operation; one marker per SSH exec, shell, sftp or forward, not exits).
    rec.summary.operations =
      m[2] === "cast"
        ? rec.events.filter((e) => e[1] === "m" && !String(e[2]).startsWith("exit")).length
        : rec.entries.length;
    sessions.set(id, rec);
  }
  return catalog(sessions);
}

/** The recording as a standard asciicast v2 file (for asciinema play, or to keep). */
export function toAsciicast(rec: SessionRecording): string {
  const header = rec.header ?? { version: 2, width: 80, height: 24, timestamp: 0 };
  return [header, ...rec.events]
    .map((v) => JSON.stringify(v))
    .join("\n")
    .concat("\n");
}
