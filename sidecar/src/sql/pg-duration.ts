// PostgreSQL's time settings as milliseconds: an integer is in the setting's unit (ms for
// statement_timeout), or a number with a unit (us, ms, s, min, h, d), as `SHOW` prints and `SET`
// accepts. Undefined for anything else (the caller keeps what it had).
const UNITS: Readonly<Record<string, number>> = {
  us: 0.001,
  ms: 1,
  s: 1000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

export function pgDurationMs(text: string): number | undefined {
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = (m[2] ?? "").toLowerCase() || "ms";
  const scale = UNITS[unit];
  if (scale === undefined) return undefined;
  const ms = Number(m[1]) * scale;
  return Number.isFinite(ms) && ms >= 0 ? Math.round(ms) : undefined;
}
