// Presenting recordings: a session table, asciicast playback at real or faster speed, and a
// readable timeline of operations (SQL/HTTP recordings, or audit events of any session).
import type {
  AsciicastEvent,
  AuditLine,
  OperationEntry,
  SessionRecording,
  SessionSummary,
} from "../../../sidecar/src/recording/index.ts";

export function sessionTable(rows: readonly SessionSummary[]): string {
  const header = [
    "SESSION",
    "PROTOCOL",
    "CONNECTION",
    "STARTED",
    "DURATION",
    "USER",
    "FORMAT",
    "EVENTS",
    "OPS",
  ];
  const body = rows.map((s) => [
    s.session,
    s.protocol ?? "-",
    s.connection ?? "-",
    s.started ?? "-",
    s.duration !== undefined ? `${s.duration.toFixed(1)}s` : s.complete === false ? "(open)" : "-",
    s.user ?? "-",
    s.format,
    String(s.count),
    String(s.operations),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => (r[i] as string).length)));
  return [header, ...body]
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] as number))).join("  "))
    .join("\n");
}

export interface PlayOptions {
  /** 1 = real time, 2 = twice as fast, 0 = no delays. */
  speed: number;
  /** Longest pause between events, seconds (after speed). */
  maxIdle?: number;
  write(data: string): void;
  /** Markers (exec:, exit, ...) go here; undefined drops them. */
  marker?(label: string, at: number): void;
  sleep?(ms: number): Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Plays asciicast events: output as recorded, in order, with the recorded pauses scaled. */
export async function play(events: readonly AsciicastEvent[], opts: PlayOptions): Promise<void> {
  const sleep = opts.sleep ?? defaultSleep;
  let last = 0;
  for (const [t, code, data] of events) {
    if (opts.speed > 0) {
      let wait = Math.max(0, t - last) / opts.speed;
      if (opts.maxIdle !== undefined) wait = Math.min(wait, opts.maxIdle);
      if (wait > 0.001) await sleep(wait * 1000);
    }
    last = t;
    if (code === "o") opts.write(data);
    else if (code === "m") opts.marker?.(data, t);
  }
}

function summarize(op: Record<string, unknown> | undefined): string {
  if (!op) return "(unknown)";
  switch (op.kind) {
    case "http":
      return `${String(op.method)} ${String(op.path)}${op.websocket ? " (websocket)" : ""}`;
    case "http-tunnel":
      return "CONNECT tunnel";
    case "sql": {
      const statements = Array.isArray(op.statements) ? (op.statements as Record<string, unknown>[]) : [];
      return (
        statements
          .map((s) => {
            const tables = Array.isArray(s.tables) ? (s.tables as string[]) : [];
            return `${String(s.kind).toUpperCase()}${tables.length ? ` ${tables.join(", ")}` : ""}`;
          })
          .join("; ") || "(empty)"
      );
    }
    case "ssh-exec":
      return `exec ${String(op.command)}`;
    case "ssh-shell":
      return "shell";
    case "ssh-sftp":
      return "sftp";
    case "ssh-forward":
      return `forward ${String(op.target)}`;
    case "tcp":
      return `connect ${String(op.destination)}`;
    default:
      return String(op.kind);
  }
}

function outcome(o: Record<string, unknown> | undefined): string {
  if (!o) return "";
  const parts: string[] = [];
  if (o.status !== undefined) parts.push(`status ${String(o.status)}`);
  if (o.error !== undefined) parts.push(`error ${String(o.error)}`);
  for (const [k, v] of Object.entries(o))
    if (k !== "status" && k !== "error") parts.push(`${k} ${String(v)}`);
  return parts.join(", ");
}

interface Row {
  t: number;
  action: string;
  what: string;
  rule?: string | undefined;
  reason?: string | undefined;
  result: string;
  durationMs?: number | undefined;
  masked?: Record<string, number> | undefined;
  approval?: string | undefined;
}

function line(r: Row): string {
  const head = `+${r.t.toFixed(3).padStart(9)}s  ${r.action.toUpperCase().padEnd(15)}  ${r.what}`;
  const tail = [
    r.rule ? `rule ${r.rule}` : r.action === "deny" && r.reason ? r.reason : undefined,
    r.approval,
    r.result || undefined,
    r.durationMs !== undefined ? `${r.durationMs} ms` : undefined,
    r.masked && Object.keys(r.masked).length
      ? `masked ${Object.entries(r.masked)
          .map(([k, v]) => `${k}=${v}`)
          .join(",")}`
      : undefined,
  ].filter(Boolean);
  return tail.length ? `${head}  (${tail.join("; ")})` : head;
}

const fromEntry = (e: OperationEntry): Row => ({
  t: e.t,
  action: e.decision.action,
  what: e.detail ? `${summarize(e.operation)}: ${e.detail}` : summarize(e.operation),
  rule: e.decision.rule,
  reason: e.decision.reason,
  result: outcome(e.outcome),
  durationMs: e.durationMs,
  masked: e.masked,
});

function fromAudit(events: readonly AuditLine[]): Row[] {
  const first = Date.parse(String(events[0]?.time ?? ""));
  return events.map((e) => {
    const decision = (e.decision ?? {}) as Record<string, unknown>;
    const approval = e.approval as { request?: string; approvers?: string[] } | undefined;
    const at = Date.parse(String(e.time ?? ""));
    return {
      t: Number.isFinite(at) && Number.isFinite(first) ? (at - first) / 1000 : 0,
      action: String(decision.action ?? "?"),
      what: summarize(e.operation as Record<string, unknown> | undefined),
      rule: decision.rule as string | undefined,
      reason: decision.reason as string | undefined,
      result: outcome(e.upstream as Record<string, unknown> | undefined),
      durationMs: typeof e.durationMs === "number" ? e.durationMs : undefined,
      masked: e.masked as Record<string, number> | undefined,
      approval: approval?.request
        ? `approved ${approval.request} by ${(approval.approvers ?? []).join(",")}`
        : undefined,
    };
  });
}

/** A readable timeline: the recording's entries, else the session's audit events. */
export function timeline(rec: SessionRecording): string {
  const s = rec.summary;
  const title = `session ${s.session}  ${s.protocol ?? "?"} ${s.connection ?? "?"}${s.user ? `  user ${s.user}` : ""}${s.started ? `  started ${s.started}` : ""}`;
  const rows = rec.entries.length > 0 ? rec.entries.map(fromEntry) : fromAudit(rec.audit);
  if (rows.length === 0) return `${title}\n(no operations recorded)`;
  return [title, ...rows.map(line)].join("\n");
}
