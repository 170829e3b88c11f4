// Serializes an audit event to its JSON line, the same line pino would write for it (level 30,
// time, the `audit`/`v` bindings, the schema's fields in schema order, `msg`), built by hand
// because it runs once per proxied operation: a generic serializer walked the nested identity,
// operation and decision objects on every line and cost more than the guard's own decision.
//
// Nested values that are frozen are serialized once and reused: the PostgreSQL guard freezes a
// session's identity and shares frozen operation and decision objects between statements, so a
// line there is mostly concatenation. Unfrozen values are serialized every time (never cached:
// a mutable object could change after its text was kept).
import { AUDIT_SCHEMA_VERSION, type AuditEvent } from "./events.ts";

const PINO_INFO = 30;
const frozenJson = new WeakMap<object, string>();

/** JSON of `value`; frozen values are serialized once and the text reused. */
export function json(value: object): string {
  const kept = frozenJson.get(value);
  if (kept !== undefined) return kept;
  const text = JSON.stringify(value);
  if (Object.isFrozen(value)) frozenJson.set(value, text);
  return text;
}

// Session ids, connection names and messages recur line after line: their JSON text is kept in
// a small map (emptied when full) instead of calling JSON.stringify for each.
const QUOTED_MAX = 1024;
const quotedText = new Map<string, string>();

/** A string as JSON, kept for strings that recur (ids, names). */
export function quoted(s: string): string {
  let q = quotedText.get(s);
  if (q === undefined) {
    if (quotedText.size >= QUOTED_MAX) quotedText.clear();
    q = JSON.stringify(s);
    quotedText.set(s, q);
  }
  return q;
}

/** ".001" … ".999" with trailing zeros dropped ("" for 0): the fraction of a microsecond-rounded value. */
const FRACTIONS: readonly string[] = Array.from({ length: 1000 }, (_, f) =>
  f === 0 ? "" : `.${String(f).padStart(3, "0")}`.replace(/0+$/, ""),
);

/**
 * A number as JSON (`null` unless finite), written as JSON.stringify would. Durations are
 * rounded to microseconds by their producers; those are formatted from integers, which is several
 * times cheaper than the general double-to-shortest-string conversion.
 */
export function num(n: number): string {
  const us = Math.round(n * 1000);
  if (us / 1000 === n && us >= 0 && us <= 0x3fffffff) {
    const whole = Math.floor(us / 1000);
    return `${whole}${FRACTIONS[us - whole * 1000]}`;
  }
  return Number.isFinite(n) ? String(n) : "null";
}

/**
 * The audit line for `event`, newline-terminated. `time` is pino's time fragment
 * (`,"time":"…"`), so lines written here and by the diagnostic logger read alike.
 */
export function auditLine(event: AuditEvent, time: string): string {
  let line = `{"level":${PINO_INFO}${time},"audit":true,"v":${AUDIT_SCHEMA_VERSION},"event":"operation","session":${quoted(event.session)},"connection":${quoted(event.connection)},"protocol":${quoted(event.protocol)},"identity":${json(event.identity)},"operation":${json(event.operation)},"decision":${json(event.decision)}`;
  if (event.approval !== undefined) line += `,"approval":${json(event.approval)}`;
  if (event.masked !== undefined) line += `,"masked":${json(event.masked)}`;
  if (event.upstream !== undefined) line += `,"upstream":${upstreamJson(event.upstream)}`;
  if (event.rows !== undefined) line += `,"rows":${num(event.rows)}`;
  if (event.credential !== undefined) line += `,"credential":${json(event.credential)}`;
  return `${line},"durationMs":${num(event.durationMs)},"msg":${message(event)}}\n`;
}

/** `upstream` is new for every operation; its common shape, a status alone, is written directly. */
function upstreamJson(u: NonNullable<AuditEvent["upstream"]>): string {
  if (u.error !== undefined) return json(u);
  if (u.status === undefined) return "{}";
  return `{"status":${typeof u.status === "number" ? num(u.status) : quoted(u.status)}}`;
}

// The message ("postgres orders-db allow") as JSON, kept per connection name: building and
// hashing a fresh string per line cost more than the rest of the line.
const messages = new Map<string, Record<string, Record<string, string>>>();

function message(event: AuditEvent): string {
  const { connection, protocol } = event;
  const action = event.decision.action;
  let byProtocol = messages.get(connection);
  if (!byProtocol) {
    if (messages.size >= QUOTED_MAX) messages.clear();
    byProtocol = Object.create(null) as Record<string, Record<string, string>>;
    messages.set(connection, byProtocol);
  }
  byProtocol[protocol] ??= Object.create(null) as Record<string, string>;
  const byAction = byProtocol[protocol];
  let m = byAction[action];
  if (m === undefined) {
    m = JSON.stringify(`${protocol} ${connection} ${action}`);
    byAction[action] = m;
  }
  return m;
}
