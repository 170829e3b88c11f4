// The soak: one real sidecar process (the `airlock sidecar` entry point, as in a pod) guarding an
// HTTP connection (the bench's node upstream, JSON masking: PII detectors and the secrets group)
// and a PostgreSQL connection (real PostgreSQL from the harness, e-mail column masking), both
// driven at a fixed rate for `minutes`. The sidecar's stdout (audit lines, recordings, logs) goes
// to a file, as a container runtime takes it, and is read from there every window: audit events
// are counted and held to the operations. (A pipe read by this process, which also drives the
// load, stalled the sidecar whenever the machine starved this process: the sidecar writes each
// audit line before answering and waits while its stdout is full, by design.)
// Every `windowSeconds` the sidecar is sampled: RSS and open descriptors from /proc, V8 heap and
// event-loop delay from its own /metrics, CPU from /proc/PID/stat; latencies per window.
import { closeSync, openSync, readdirSync, readSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { startUpstream } from "../bench/http.ts";
import { cpuSeconds } from "../bench/measure.ts";
import { waitForPort } from "../bench/nginx.ts";
import { processMemory, sidecarLaunch, spawnSidecar } from "../bench/sidecar-process.ts";
import { freePort, startPostgres } from "../harness/postgres.ts";
import { driveHttp, drivePostgres } from "./load.ts";
import { protocolWindow, type SoakResult, type SoakTotals, type SoakWindow } from "./verdict.ts";

const CUSTOMERS = 200;

export interface SoakOptions {
  minutes: number;
  /** Operations per second, for each of HTTP and PostgreSQL. */
  rate: number;
  windowSeconds: number;
  warmupSeconds: number;
  httpConnections?: number;
  pgClients?: number;
  log: (s: string) => void;
  /** Ends the run at the next window (the windows so far are returned). */
  signal?: AbortSignal;
}

function policy(p: { upstream: number; http: number; pg: number; pgPort: number; database: string }): string {
  return `apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: soak, namespace: default }
spec:
  connections:
    - name: api
      protocol: http
      target: { host: 127.0.0.1, port: ${p.upstream} }
      tls: { mode: disable }
      credentials: { secretRef: { name: api }, http: { key: token } }
      listen: { port: ${p.http} }
    - name: db
      protocol: postgres
      target: { host: 127.0.0.1, port: ${p.pgPort} }
      listen: { port: ${p.pg} }
      tls: { mode: disable }
      database: ${p.database}
      credentials: { secretRef: { name: db } }
  rules:
    - { name: no-admin, action: deny, connections: [api], match: { http: { paths: ["/admin/**"] } } }
    - { name: read-api, action: allow, connections: [api], match: { http: { methods: [GET], paths: ["/customers", "/customers/**"] } } }
    - { name: no-delete, action: deny, connections: [db], match: { sql: { statements: [delete] } } }
    - { name: reads, action: allow, connections: [db], match: { sql: { statements: [read], tables: [customers] } } }
    - { name: counters, action: allow, connections: [db], match: { sql: { statements: [update], tables: [counters] } } }
  masking:
    - { name: pii, connections: [api], detectors: [email, phone, creditCard], strategy: partial }
    - { name: secrets, connections: [api], detectors: [secrets], strategy: redact }
    - { name: emails, connections: [db], columns: [email], detectors: [email], strategy: partial }
`;
}

async function scrape(adminPort: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const m = new Map<string, number>();
  for (const line of text.split("\n")) {
    const hit = /^airlock_process_(nodejs_\w+) (\S+)$/.exec(line);
    if (hit) m.set(hit[1] as string, Number(hit[2]));
  }
  return m;
}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const startedAt = new Date().toISOString();
  const loadStart = loadavg();
  const dir = await mkdtemp(join(tmpdir(), "airlock-soak-"));
  const cleanup: (() => Promise<void> | void)[] = [() => rm(dir, { recursive: true, force: true })];
  try {
    opts.log("  soak: PostgreSQL, upstream, sidecar");
    const pg = await startPostgres();
    cleanup.push(() => pg.stop());
    const user = await pg.createUser("soak");
    await pg.sql(`
      create table customers (id int primary key, name text, email text);
      insert into customers select i, 'name ' || i, 'person' || i || '@example.com' from generate_series(1, ${CUSTOMERS}) i;
      create table counters (id int primary key, n bigint not null default 0);
      insert into counters select i, 0 from generate_series(1, 100) i;
      grant select, delete on customers to ${user.user};
      grant select, update on counters to ${user.user};
    `);
    let upstreamRequests = 0;
    const upPort = await freePort();
    const upstream = await startUpstream(upPort, () => upstreamRequests++);
    cleanup.push(() => {
      upstream.close();
      upstream.closeAllConnections();
    });
    await mkdir(join(dir, "secrets", "api"), { recursive: true });
    await mkdir(join(dir, "secrets", "db"), { recursive: true });
    await writeFile(join(dir, "secrets", "api", "token"), "bench-token");
    await writeFile(join(dir, "secrets", "db", "username"), user.user);
    await writeFile(join(dir, "secrets", "db", "password"), user.password);
    const [httpPort, pgPort, adminPort] = [await freePort(), await freePort(), await freePort()];
    await writeFile(
      join(dir, "policy.yaml"),
      policy({ upstream: upPort, http: httpPort, pg: pgPort, pgPort: pg.port, database: pg.database }),
    );

    const launch = await sidecarLaunch();
    const stdoutFile = join(dir, "stdout.log");
    const stdoutFd = openSync(stdoutFile, "w");
    cleanup.push(() => closeSync(stdoutFd));
    const sidecar = spawnSidecar(dir, {
      adminPort,
      launch,
      stdout: stdoutFd,
      env: { NODE_ENV: "production" },
    });
    cleanup.push(
      () =>
        new Promise<void>((r) => {
          if (sidecar.exitCode !== null) return r();
          sidecar.once("exit", () => r());
          sidecar.kill("SIGTERM");
        }),
    );
    // The audit consumer: every stdout line is read; audit events are counted by protocol.
    const audit = { lines: 0, http: 0, postgres: 0, httpAllowed: 0, pgUpdatesAllowed: 0, other: 0 };
    let windowAuditLines = 0;
    const reader = openSync(stdoutFile, "r");
    cleanup.push(() => closeSync(reader));
    let offset = 0;
    let partial = "";
    const chunk = Buffer.alloc(1 << 20);
    const readAudit = () => {
      for (;;) {
        const n = readSync(reader, chunk, 0, chunk.length, offset);
        if (n === 0) return;
        offset += n;
        const lines = (partial + chunk.toString("utf8", 0, n)).split("\n");
        partial = lines.pop() ?? "";
        for (const line of lines) countLine(line);
      }
    };
    const countLine = (line: string) => {
      if (!line.includes('"audit":true')) return;
      audit.lines++;
      windowAuditLines++;
      const e = JSON.parse(line) as {
        protocol?: string;
        decision?: { action?: string };
        operation?: { statements?: { kind?: string }[] };
      };
      const allowed = e.decision?.action === "allow";
      if (e.protocol === "http") {
        audit.http++;
        if (allowed) audit.httpAllowed++;
      } else if (e.protocol === "postgres") {
        audit.postgres++;
        if (allowed && e.operation?.statements?.[0]?.kind === "update") audit.pgUpdatesAllowed++;
      } else audit.other++;
    };
    await waitForPort(pgPort, () => (sidecar.exitCode !== null ? "sidecar exited" : undefined));
    const pid = sidecar.pid as number;
    await new Promise((r) => setTimeout(r, 2000));
    const idle = processMemory(pid);

    opts.log(`  soak: ${opts.rate}/s HTTP + ${opts.rate}/s PostgreSQL, ${opts.minutes} min`);
    const http = driveHttp({
      port: httpPort,
      rate: opts.rate,
      connections: opts.httpConnections ?? 16,
      rawMarker: "customer0@example.com",
    });
    const postgres = await drivePostgres({
      port: pgPort,
      database: pg.database,
      rate: opts.rate,
      clients: opts.pgClients ?? 8,
      rows: CUSTOMERS,
    });
    await new Promise((r) => setTimeout(r, opts.warmupSeconds * 1000));
    // The measured part begins: reset the per-window state (event-loop monitor, latencies, CPU).
    await scrape(adminPort);
    http.recorder.rotate();
    postgres.recorder.rotate();
    http.recorder.recording = true;
    postgres.recorder.recording = true;
    readAudit();
    windowAuditLines = 0;
    const t0 = performance.now();
    let cpu0 = cpuSeconds(pid);
    let tPrev = t0;
    const windows: SoakWindow[] = [];
    const count = Math.max(1, Math.round((opts.minutes * 60) / opts.windowSeconds));
    for (let i = 1; i <= count && !opts.signal?.aborted; i++) {
      const due = t0 + i * opts.windowSeconds * 1000;
      await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
      if (sidecar.exitCode !== null)
        throw new Error(`the sidecar exited (${sidecar.exitCode}) during the soak`);
      const now = performance.now();
      const cpu = cpuSeconds(pid);
      const m = await scrape(adminPort);
      readAudit();
      const w: SoakWindow = {
        t: (now - t0) / 1000,
        ...processMemory(pid),
        heapUsedMb: (m.get("nodejs_heap_size_used_bytes") ?? Number.NaN) / 1024 / 1024,
        fds: readdirSync(`/proc/${pid}/fd`).length,
        loopP99Ms: (m.get("nodejs_eventloop_lag_p99_seconds") ?? Number.NaN) * 1000,
        loopMaxMs: (m.get("nodejs_eventloop_lag_max_seconds") ?? Number.NaN) * 1000,
        cpuPct: (100 * (cpu - cpu0)) / ((now - tPrev) / 1000),
        http: protocolWindow(http.recorder.rotate()),
        postgres: protocolWindow(postgres.recorder.rotate()),
        auditLines: windowAuditLines,
      };
      windowAuditLines = 0;
      cpu0 = cpu;
      tPrev = now;
      windows.push(w);
      opts.log(
        `  soak ${w.t.toFixed(0)}s: RSS ${w.rssMb.toFixed(1)} MB, heap ${w.heapUsedMb.toFixed(1)} MB, fds ${w.fds}, loop p99 ${w.loopP99Ms.toFixed(1)} ms, HTTP p99 ${w.http.p99.toFixed(2)} ms (${w.http.errors} err), PG p99 ${w.postgres.p99.toFixed(2)} ms (${w.postgres.errors} err)`,
      );
    }
    await http.stop();
    await postgres.stop();
    // Every answered operation's line was written before its answer; read to the end.
    readAudit();
    const updates = Number((await pg.sql("select sum(n) from counters")).trim());
    const totals: SoakTotals[] = [
      {
        protocol: "http",
        completed: http.recorder.completed,
        audited: audit.http,
        auditedAllowed: audit.httpAllowed,
        upstream: upstreamRequests,
      },
      {
        protocol: "postgres",
        completed: postgres.recorder.completed,
        audited: audit.postgres,
        auditedAllowed: audit.pgUpdatesAllowed,
        upstream: updates,
      },
    ];
    return {
      startedAt,
      minutes: opts.minutes,
      rate: opts.rate,
      windowSeconds: opts.windowSeconds,
      warmupSeconds: opts.warmupSeconds,
      windows,
      totals,
      loadAverage: { start: loadStart, end: loadavg() },
      idleRssMb: idle.rssMb,
      idleAnonMb: idle.anonMb,
      launch: launch.label,
    };
  } finally {
    for (const c of cleanup.reverse()) await c();
  }
}
