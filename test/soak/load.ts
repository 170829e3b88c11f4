// Open-loop load for the soak: operations are scheduled by the clock (`rate` per second, whether
// or not earlier ones have finished) and each latency is measured from its scheduled time, not
// from when a free connection let it go out. A stall then shows as the queue of late operations
// it causes (no coordinated omission: a closed-loop generator would simply send less during it).
import { Agent, request } from "node:http";
import pg from "pg";

/** What one window of one protocol saw. */
export interface WindowStats {
  /** Operations scheduled in the window that completed, and their latencies (ms from the schedule). */
  latencies: number[];
  /** Unexpected outcomes (wrong status, unmasked data, refused read, timeout, dropped). */
  errors: number;
  /** Refusals the workload asks for (a denied path or statement), counted apart from errors. */
  refusals: number;
  /** First few error descriptions, for the report. */
  samples: string[];
}

const emptyWindow = (): WindowStats => ({ latencies: [], errors: 0, refusals: 0, samples: [] });

/** Per-window statistics of one protocol's operations, and their totals. */
export class Recorder {
  private window = emptyWindow();
  /** Every operation that completed (successfully, refused or failed), over the whole run. */
  completed = 0;
  refusals = 0;
  errors = 0;
  /** Off during warm-up: operations still run and count in the totals, not in windows. */
  recording = false;

  ok(scheduledAt: number) {
    this.completed++;
    if (this.recording) this.window.latencies.push(performance.now() - scheduledAt);
  }
  refused(scheduledAt: number) {
    this.refusals++;
    this.ok(scheduledAt);
    if (this.recording) this.window.refusals++;
  }
  error(scheduledAt: number, why: string, completed = true) {
    this.errors++;
    if (completed) this.completed++;
    if (!this.recording) return;
    this.window.latencies.push(performance.now() - scheduledAt);
    this.window.errors++;
    if (this.window.samples.length < 3) this.window.samples.push(why);
  }
  /** The window so far, and a fresh one. */
  rotate(): WindowStats {
    const w = this.window;
    this.window = emptyWindow();
    return w;
  }
}

/** Calls `fire(scheduledAt)` `rate` times a second, on schedule, until stopped. */
export function openLoop(rate: number, fire: (scheduledAt: number) => void): { stop(): void } {
  const interval = 1000 / rate;
  let next = performance.now();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    if (stopped) return;
    const now = performance.now();
    // Everything due by now goes out, late ones too: the lateness is in their latency.
    while (next <= now) {
      fire(next);
      next += interval;
    }
    timer = setTimeout(tick, Math.max(0, Math.min(interval, next - performance.now())));
  };
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/** Operations waiting beyond this many seconds' worth of the rate are dropped as errors (bounded memory). */
const MAX_BACKLOG_SECONDS = 30;
const TIMEOUT_MS = 10_000;

export interface Driver {
  recorder: Recorder;
  /** Stops scheduling; resolves once every operation in flight has completed. */
  stop(): Promise<void>;
}

/**
 * HTTP through the sidecar: GET /customers (allowed; the JSON comes back masked), and every 20th
 * request GET /admin/stats (denied by rule: 403). Keep-alive over `connections` sockets.
 */
export function driveHttp(opts: {
  port: number;
  rate: number;
  connections: number;
  rawMarker: string;
}): Driver {
  const recorder = new Recorder();
  const agent = new Agent({ keepAlive: true, maxSockets: opts.connections });
  let n = 0;
  let inflight = 0;
  let drained: (() => void) | undefined;
  const done = () => {
    inflight--;
    if (inflight === 0) drained?.();
  };
  const loop = openLoop(opts.rate, (t) => {
    if (inflight > opts.rate * MAX_BACKLOG_SECONDS) return recorder.error(t, "backlog full: dropped", false);
    const denied = ++n % 20 === 0;
    inflight++;
    const req = request(
      { host: "127.0.0.1", port: opts.port, path: denied ? "/admin/stats" : "/customers", agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          if (denied) {
            if (res.statusCode === 403) recorder.refused(t);
            else recorder.error(t, `GET /admin/stats: ${res.statusCode}, expected 403`);
          } else if (res.statusCode !== 200) recorder.error(t, `GET /customers: ${res.statusCode}`);
          else if (text.includes(opts.rawMarker)) recorder.error(t, "GET /customers: unmasked e-mail");
          else recorder.ok(t);
          done();
        });
        res.on("error", (e) => {
          recorder.error(t, `response: ${e.message}`);
          done();
        });
      },
    );
    req.setTimeout(TIMEOUT_MS, () => req.destroy(new Error("timeout")));
    req.on("error", (e) => {
      recorder.error(t, `request: ${e.message}`);
      done();
    });
    req.end();
  });
  return {
    recorder,
    async stop() {
      loop.stop();
      if (inflight > 0) await new Promise<void>((r) => (drained = r));
      agent.destroy();
    },
  };
}

type PgOp = {
  text: string;
  values?: unknown[];
  check(r: pg.QueryResult): string | undefined;
  denied?: boolean;
};

/**
 * PostgreSQL through the sidecar, over `clients` sessions: 70 % a masked read by primary key
 * (extended protocol; the e-mail must come back masked), 15 % a count whose text differs every
 * time (simple protocol: the classifier parses each), 10 % an allowed UPDATE, 5 % a DELETE the
 * policy denies (42501, the session stays usable).
 */
export function pgOp(n: number, rows: number): PgOp {
  const k = (n % rows) + 1;
  const slot = n % 20;
  if (slot === 19)
    return {
      text: `delete from customers where id = ${-k}`,
      denied: true,
      check: () => "delete was not refused",
    };
  if (slot === 17 || slot === 18)
    return {
      text: "update counters set n = n + 1 where id = $1",
      values: [(n % 100) + 1],
      check: (r) => (r.rowCount === 1 ? undefined : `update touched ${r.rowCount} rows`),
    };
  if (slot >= 14)
    return {
      text: `select count(*) as c from customers where id <= ${k}`,
      check: (r) => (Number(r.rows[0]?.c) === k ? undefined : `count ${r.rows[0]?.c}, expected ${k}`),
    };
  return {
    text: "select id, email from customers where id = $1",
    values: [k],
    check: (r) => {
      const email = String(r.rows[0]?.email ?? "");
      if (r.rows.length !== 1) return `read ${r.rows.length} rows`;
      return email.startsWith(`person${k}@`) || !email.includes("*") ? `unmasked e-mail ${email}` : undefined;
    },
  };
}

export async function drivePostgres(opts: {
  port: number;
  database: string;
  rate: number;
  clients: number;
  rows: number;
}): Promise<Driver> {
  const recorder = new Recorder();
  const clients = await Promise.all(
    Array.from({ length: opts.clients }, async () => {
      const c = new pg.Client({
        host: "127.0.0.1",
        port: opts.port,
        user: "agent",
        database: opts.database,
        query_timeout: TIMEOUT_MS,
      });
      c.on("error", () => undefined); // reported through the failing query
      await c.connect();
      return c;
    }),
  );
  const idle = [...clients];
  const queue: { t: number; n: number }[] = [];
  let n = 0;
  let inflight = 0;
  let drained: (() => void) | undefined;
  const run = (c: pg.Client, job: { t: number; n: number }) => {
    inflight++;
    const op = pgOp(job.n, opts.rows);
    c.query(op.values ? { text: op.text, values: op.values } : op.text)
      .then(
        (r) => {
          const why = op.check(r);
          if (why) recorder.error(job.t, why);
          else recorder.ok(job.t);
        },
        (e: Error & { code?: string }) => {
          if (op.denied && e.code === "42501") recorder.refused(job.t);
          else recorder.error(job.t, `${op.text.slice(0, 40)}: ${e.code ?? ""} ${e.message}`);
        },
      )
      .finally(() => {
        inflight--;
        const next = queue.shift();
        if (next) run(c, next);
        else {
          idle.push(c);
          if (inflight === 0) drained?.();
        }
      });
  };
  const loop = openLoop(opts.rate, (t) => {
    const job = { t, n: n++ };
    const c = idle.pop();
    if (c) return run(c, job);
    if (queue.length > opts.rate * MAX_BACKLOG_SECONDS)
      return recorder.error(t, "backlog full: dropped", false);
    queue.push(job);
  });
  return {
    recorder,
    async stop() {
      loop.stop();
      if (inflight > 0) await new Promise<void>((r) => (drained = r));
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    },
  };
}
