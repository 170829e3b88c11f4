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

function json(value: object): string {
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

function quoted(s: string): string {
  let q = quotedText.get(s);
  if (q === undefined) {
    if (quotedText.size >= QUOTED_MAX) quotedText.clear();
    q = JSON.stringify(s);
    quotedText.set(s, q);
  }
  return q;
}

/**
 * A number as JSON (`null` unless finite), written as JSON.stringify would. Durations are
 * rounded to microseconds by their producers; those are formatted from integers, which is several
 * times cheaper than the general double-to-shortest-string conversion.
 */
function num(n: number): string {
  const us = Math.round(n * 1000);
  if (us / 1000 === n && us >= 0 && us <= 0x3fffffff) {
    const whole = Math.floor(us / 1000);
    let frac = us - whole * 1000;
    if (frac === 0) return String(whole);
    let digits = 3;
    while (frac % 10 === 0) {
      frac /= 10;
      digits--;
    }
    return `${whole}.${String(frac).padStart(digits, "0")}`;
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
  if (event.upstream !== undefined) line += `,"upstream":${json(event.upstream)}`;
  if (event.rows !== undefined) line += `,"rows":${num(event.rows)}`;
  const msg = `${event.protocol} ${event.connection} ${event.decision.action}`;
  return `${line},"durationMs":${num(event.durationMs)},"msg":${quoted(msg)}}\n`;
}
