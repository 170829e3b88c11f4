// The soak's windows, its verdict and its report. Pure: the bounds are stated here and printed
// with the verdict, so a reader knows what "flat" and "stable" were held to.
import type { WindowStats } from "./load.ts";

export interface ProtocolWindow {
  n: number;
  p50: number;
  p99: number;
  max: number;
  errors: number;
  refusals: number;
  samples: string[];
}

export interface SoakWindow {
  /** Seconds since the measured part of the run began, at the end of the window. */
  t: number;
  rssMb: number;
  /** The private part of the RSS (anonymous pages; the node binary's pages are shared by every sidecar on a node). */
  anonMb: number;
  heapUsedMb: number;
  fds: number;
  /** Event-loop delay over the window (the sidecar's own monitor, reset at each scrape), ms. */
  loopP99Ms: number;
  loopMaxMs: number;
  /** Sidecar CPU (user + system) over the window, % of one core. */
  cpuPct: number;
  http: ProtocolWindow;
  postgres: ProtocolWindow;
  /** Audit lines the consumer read from the sidecar's stdout in the window. */
  auditLines: number;
}

export interface SoakTotals {
  protocol: "http" | "postgres";
  /** Operations the load generator saw complete (allowed, refused or failed). */
  completed: number;
  /** Audit events of that protocol read from the sidecar's stdout. */
  audited: number;
  /**
   * The upstream's own count, to hold the allowed audit events to: requests the HTTP upstream
   * received; for PostgreSQL, the updates the database applied (sum of the counters).
   */
  upstream?: number;
  /** Audit events of the kind `upstream` counts, allowed: HTTP requests; PostgreSQL UPDATEs. */
  auditedAllowed: number;
}

export interface SoakResult {
  startedAt: string;
  minutes: number;
  rate: number;
  windowSeconds: number;
  warmupSeconds: number;
  windows: SoakWindow[];
  totals: SoakTotals[];
  /** Machine load average (1, 5, 15 min) at the start and at the end. */
  loadAverage: { start: number[]; end: number[] };
  idleRssMb: number;
  idleAnonMb: number;
  /** How the sidecar process was run (test/bench/sidecar-process.ts). */
  launch: string;
}

export const BOUNDS = {
  /** RSS growth over the run (least-squares slope × measured duration), % of the first window's. */
  rssGrowthPct: 10,
  /** Open descriptors, last window minus first. */
  fdGrowth: 2,
  /** Last window's p99 ÷ first window's, per protocol. */
  p99Ratio: 2,
} as const;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export function protocolWindow(w: WindowStats): ProtocolWindow {
  const s = [...w.latencies].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: percentile(s, 50),
    p99: percentile(s, 99),
    max: s.length ? (s[s.length - 1] as number) : Number.NaN,
    errors: w.errors,
    refusals: w.refusals,
    samples: w.samples,
  };
}

/** Least-squares slope of y over x. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += ((xs[i] as number) - mx) * ((ys[i] as number) - my);
    den += ((xs[i] as number) - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export function verdict(r: SoakResult): Check[] {
  const w = r.windows;
  const first = w[0];
  const last = w[w.length - 1];
  if (!first || !last) return [{ name: "windows", ok: false, detail: "no measured window" }];
  const fmt = (n: number, d = 1) => n.toFixed(d);
  const span = last.t - first.t;
  const rssSlope = slope(
    w.map((x) => x.t),
    w.map((x) => x.rssMb),
  );
  const rssGrowth = (100 * rssSlope * span) / first.rssMb;
  const checks: Check[] = [
    {
      name: "RSS flat",
      ok: rssGrowth <= BOUNDS.rssGrowthPct,
      detail: `slope ${fmt(rssSlope * 60, 2)} MB/min, ${fmt(rssGrowth)} % over ${fmt(span / 60)} min (bound ${BOUNDS.rssGrowthPct} %); first ${fmt(first.rssMb)} MB, last ${fmt(last.rssMb)} MB, max ${fmt(Math.max(...w.map((x) => x.rssMb)))} MB`,
    },
    {
      name: "fds flat",
      ok: last.fds - first.fds <= BOUNDS.fdGrowth,
      detail: `first ${first.fds}, last ${last.fds}, range ${Math.min(...w.map((x) => x.fds))}–${Math.max(...w.map((x) => x.fds))} (bound +${BOUNDS.fdGrowth})`,
    },
  ];
  for (const p of ["http", "postgres"] as const) {
    const ratio = last[p].p99 / first[p].p99;
    checks.push({
      name: `${p} p99 stable`,
      ok: ratio <= BOUNDS.p99Ratio,
      detail: `first window ${fmt(first[p].p99, 2)} ms, last ${fmt(last[p].p99, 2)} ms, × ${fmt(ratio, 2)} (bound × ${BOUNDS.p99Ratio}); worst window ${fmt(Math.max(...w.map((x) => x[p].p99)), 2)} ms`,
    });
  }
  const errors = w.reduce((a, x) => a + x.http.errors + x.postgres.errors, 0);
  checks.push({
    name: "no errors",
    ok: errors === 0,
    detail: `${errors} unexpected outcomes${
      errors
        ? `: ${w
            .flatMap((x) => [...x.http.samples, ...x.postgres.samples])
            .slice(0, 3)
            .join("; ")}`
        : ""
    }`,
  });
  for (const t of r.totals) {
    const upstreamOk = t.upstream === undefined || t.upstream === t.auditedAllowed;
    checks.push({
      name: `${t.protocol}: audit events = operations`,
      ok: t.audited === t.completed && upstreamOk,
      detail: `${t.completed} operations, ${t.audited} audit events${
        t.upstream === undefined
          ? ""
          : t.protocol === "http"
            ? `; ${t.auditedAllowed} allowed, ${t.upstream} reached the upstream`
            : `; ${t.auditedAllowed} UPDATEs allowed, ${t.upstream} applied by PostgreSQL`
      }`,
    });
  }
  return checks;
}

export function formatSoak(r: SoakResult): string {
  const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");
  const out = [
    `Soak: ${r.minutes} min at ${r.rate} HTTP req/s + ${r.rate} PostgreSQL statements/s (open loop, latency from the scheduled time), masking and audit on; ${r.windowSeconds} s windows after ${r.warmupSeconds} s of warm-up. Started ${r.startedAt}; sidecar run ${r.launch}; idle RSS ${f(r.idleRssMb)} MB (private ${f(r.idleAnonMb)} MB); load average ${r.loadAverage.start.map((x) => f(x, 2)).join(" ")} at start, ${r.loadAverage.end.map((x) => f(x, 2)).join(" ")} at the end`,
    "",
    "| t s | RSS MB | private MB | heap MB | fds | loop p99 ms | loop max ms | CPU % | HTTP n | HTTP p50/p99/max ms | HTTP err | PG n | PG p50/p99/max ms | PG err | audit lines |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const w of r.windows)
    out.push(
      `| ${f(w.t, 0)} | ${f(w.rssMb)} | ${f(w.anonMb)} | ${f(w.heapUsedMb)} | ${w.fds} | ${f(w.loopP99Ms, 1)} | ${f(w.loopMaxMs, 1)} | ${f(w.cpuPct, 0)} | ${w.http.n} | ${f(w.http.p50, 2)} / ${f(w.http.p99, 2)} / ${f(w.http.max, 1)} | ${w.http.errors} | ${w.postgres.n} | ${f(w.postgres.p50, 2)} / ${f(w.postgres.p99, 2)} / ${f(w.postgres.max, 1)} | ${w.postgres.errors} | ${w.auditLines} |`,
    );
  const checks = verdict(r);
  out.push("", `Verdict: ${checks.every((c) => c.ok) ? "PASS" : "FAIL"}`);
  for (const c of checks) out.push(`- ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
  return out.join("\n");
}

/**
 * Per-minute figures of a soak, for the bench's report: the windows grouped by minute; p50 is the
 * median of the windows' p50s, p99 the worst window's (an upper bound of the minute's p99).
 */
export function soakMinutes(r: SoakResult): string {
  const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");
  const rows = new Map<number, SoakWindow[]>();
  for (const w of r.windows) {
    // A window ends a little after its nominal time (t = 60.03 belongs to minute 1).
    const m = Math.max(1, Math.ceil((w.t - 1) / 60));
    rows.set(m, [...(rows.get(m) ?? []), w]);
  }
  const max = (ws: SoakWindow[], pick: (w: SoakWindow) => number) => Math.max(...ws.map(pick));
  const median = (ws: SoakWindow[], pick: (w: SoakWindow) => number) => {
    const s = ws.map(pick).sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)] as number;
  };
  const out = [
    "| minute | RSS MB (end) | private MB | fds | HTTP p50 / p99 ms | PG p50 / p99 ms | errors | CPU % |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const [m, ws] of rows) {
    const last = ws[ws.length - 1] as SoakWindow;
    out.push(
      `| ${m} | ${f(last.rssMb)} | ${f(last.anonMb)} | ${last.fds} | ${f(
        median(ws, (w) => w.http.p50),
        2,
      )} / ${f(
        max(ws, (w) => w.http.p99),
        2,
      )} | ${f(
        median(ws, (w) => w.postgres.p50),
        2,
      )} / ${f(
        max(ws, (w) => w.postgres.p99),
        2,
      )} | ${ws.reduce((a, w) => a + w.http.errors + w.postgres.errors, 0)} | ${f(ws.reduce((a, w) => a + w.cpuPct, 0) / ws.length, 0)} |`,
    );
  }
  const checks = verdict(r);
  out.push(
    "",
    `Verdict: ${checks.every((c) => c.ok) ? "PASS" : "FAIL"} (${
      checks
        .filter((c) => !c.ok)
        .map((c) => c.name)
        .join(", ") || "all checks"
    }${checks.every((c) => c.ok) ? " held" : " failed"})`,
  );
  for (const c of checks) out.push(`- ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
  return out.join("\n");
}
