// PostgreSQL rows of `npm run bench`: pgbench against the server directly, through PgBouncer
// (Debian), and through the Airlock PostgreSQL guard (classification, policy, audit, credential
// injection; and once more with masking rules on), side by side in one run.
//
//   import { benchPostgres } from "./postgres.ts";
//   const r = await benchPostgres({ seconds: 8, clients: 8, log });   // r.rows, r.sidecarRssMb
//
// Run alone: `node test/bench/postgres.ts [--seconds 6] [--clients 8] [--scale 5] [--rounds 3]
// [--placement shared|pinned]` prints the tables (both placements by default; see Placement).
//
// Workloads: `select-only` is `pgbench -S` (one SELECT per transaction, simple protocol: every
// statement text differs, so the classifier parses each one); `select-only prepared` is
// `pgbench -S -M prepared` (parsed once per connection); `tpcb-like` is pgbench's default mixed
// read/write transaction; `1000-row select` reads 1000 pgbench_accounts rows per statement (the
// per-row path: framing, pass-through, masking). Connections are made once per client (no -C):
// the steady state of an agent's session. The guard runs in its own Node process, as in a pod,
// writing its audit log (one JSON line per statement) with the sidecar's logger to stdout, which
// is /dev/null, and appends each operation to the session's recording (on by default, stdout).
//
// The machine is shared and noisy: each workload runs every path once per round, rounds
// interleaved, and reports the median; the proxies' CPU time per transaction (read from /proc)
// is the steadier figure for comparing the guard with PgBouncer.
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { chownSync, readFileSync, writeSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { createAuditSink } from "../../sidecar/src/audit/sink.ts";
import { recordingAuditSink } from "../../sidecar/src/recording/audit-tee.ts";
import { createRecorder, DEFAULT_RECORDING_SETTINGS } from "../../sidecar/src/recording/recorder.ts";
import { createPolicyStore } from "../../sidecar/src/runtime/policy-store.ts";
import { createLogger } from "../../sidecar/src/telemetry/logger.ts";
import {
  freePort,
  nonRootAccount,
  PG_BIN_DIR,
  type PgUser,
  type PostgresServer,
  startPostgres,
} from "../harness/postgres.ts";
import { pgPolicy, startGuard } from "../postgres/support.ts";
import { stealLine, stealMeter } from "./steal.ts";

export interface PgbenchResult {
  tps: number;
  latencyMs: number;
  transactions: number;
  failed: number;
}

/**
 * Where the processes run. `shared`: everything on every core (the proxy competes with pgbench
 * and PostgreSQL for the same two cores: its CPU per transaction is taken from the database's).
 * `pinned`: pgbench and PostgreSQL on core 0, the proxy alone on core 1 — the shape of a
 * deployment, where the sidecar has its own CPU in the agent's pod and the database runs elsewhere.
 */
export type Placement = "shared" | "pinned";

export interface PostgresBenchRow {
  placement: Placement;
  workload: string;
  path: string;
  /** Median TPS and latency of the rounds; transactions and failures summed. */
  result: PgbenchResult;
  /** Proxies only (PgBouncer, the guard): the proxy process's CPU time per transaction. */
  proxyCpuUsPerTx?: number;
}

export interface PostgresBench {
  rows: PostgresBenchRow[];
  /** Measured runs per path and workload, and the seconds of each. */
  rounds: number;
  runSeconds: number;
  sidecarRssMb: number;
  /** Per workload: sidecar TPS ÷ PgBouncer TPS, and ÷ direct. */
  ratios: {
    placement: Placement;
    workload: string;
    path: string;
    vsPgbouncer: number;
    vsDirect: number;
    addedLatencyMs: number;
  }[];
  placements: Placement[];
}

/** Runs pgbench; `env` carries PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE. */
export function pgbench(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 300_000,
  cpus?: string,
): Promise<PgbenchResult & { output: string }> {
  const bin = join(PG_BIN_DIR, "pgbench");
  return new Promise((resolve, reject) => {
    execFile(
      cpus ? "taskset" : bin,
      cpus ? ["-c", cpus, bin, ...args] : args,
      { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const output = `${stdout}\n${stderr}`;
        const tps = Number(/tps = ([\d.]+)/.exec(output)?.[1] ?? Number.NaN);
        if (err && Number.isNaN(tps)) {
          reject(new Error(`pgbench ${args.join(" ")} failed: ${err.message}\n${output}`));
          return;
        }
        resolve({
          tps,
          latencyMs: Number(/latency average = ([\d.]+) ms/.exec(output)?.[1] ?? Number.NaN),
          transactions: Number(/number of transactions actually processed: (\d+)/.exec(output)?.[1] ?? 0),
          failed: Number(/number of failed transactions: (\d+)/.exec(output)?.[1] ?? 0),
          output,
        });
      },
    );
  });
}

export interface Pgbouncer {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

/** PgBouncer (transaction pooling) in front of `pg`, logging in upstream as `user`. */
export async function startPgbouncer(pg: PostgresServer, user: PgUser, poolSize = 8): Promise<Pgbouncer> {
  const dir = await mkdtemp(join(tmpdir(), "airlock-pgbouncer-"));
  const port = await freePort();
  const ini = join(dir, "pgbouncer.ini");
  await writeFile(
    ini,
    `[databases]
${pg.database} = host=127.0.0.1 port=${pg.port} dbname=${pg.database} user=${user.user} password=${user.password}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = ${poolSize}
max_client_conn = 200
logfile = ${join(dir, "pgbouncer.log")}
pidfile = ${join(dir, "pgbouncer.pid")}
ignore_startup_parameters = extra_float_digits,options
`,
  );
  // PgBouncer refuses to run as root: use the account the harness runs PostgreSQL as.
  const account = nonRootAccount();
  if (account) {
    chownSync(dir, account.uid, account.gid);
    chownSync(ini, account.uid, account.gid);
  }
  const child: ChildProcess = spawn("pgbouncer", [ini], {
    stdio: ["ignore", "ignore", "pipe"],
    ...(account ? { uid: account.uid, gid: account.gid } : {}),
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`pgbouncer exited: ${stderr}`);
    try {
      await pgbench(["-S", "-t", "1", "-n", pg.database], {
        PGHOST: "127.0.0.1",
        PGPORT: String(port),
        PGUSER: user.user,
      });
      break;
    } catch (err) {
      if (Date.now() > deadline)
        throw new Error(`pgbouncer did not come up: ${(err as Error).message}\n${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    port,
    pid: child.pid ?? 0,
    async stop() {
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      child.kill("SIGINT");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const BENCH_RULES: AgentAccessPolicy["spec"]["rules"] = [
  { name: "no-ddl", action: "deny", match: { sql: { statements: ["create", "alter", "drop", "truncate"] } } },
  {
    name: "bench",
    action: "allow",
    match: { sql: { statements: ["read", "write", "transaction", "set"], tables: ["pgbench_*"] } },
  },
  { name: "session", action: "allow", match: { sql: { statements: ["transaction", "set", "show"] } } },
];
const BENCH_MASKING: AgentAccessPolicy["spec"]["masking"] = [
  { name: "pii", columns: ["card_number", "email"], detectors: ["email", "creditCard"], strategy: "partial" },
];

interface ServeConfig {
  policy: AgentAccessPolicy;
  credential: PgUser;
}

/**
 * Child-process mode: serve the guard and print its port on fd 3. Audit lines go through the
 * sidecar's own logger (`createLogger`: its stdout destination, which the parent points at
 * /dev/null), so the bench pays for audit exactly what a pod does.
 */
async function serve(config: ServeConfig) {
  const logger = createLogger({ level: "warn" });
  // As the sidecar wires it (app.ts): audit lines, and the session recording every HTTP and SQL
  // operation appends to (recording is on by default, to stdout).
  const policies = createPolicyStore({ logger });
  policies.update([config.policy]);
  const recorder = createRecorder({ logger, settingsFor: () => DEFAULT_RECORDING_SETTINGS });
  const audit = recordingAuditSink(createAuditSink(logger), recorder, policies);
  const g = await startGuard(config.policy, {
    credential: config.credential,
    keepAudit: false,
    audit: (e) => audit.emit(e),
    logLevel: "warn",
  });
  writeSync(3, `${g.port}\n`);
  process.on("SIGTERM", () => {
    g.close().finally(() => process.exit(0));
  });
}

async function spawnGuard(config: ServeConfig): Promise<{ port: number; pid: number; stop(): void }> {
  const file = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [file, "--serve", JSON.stringify(config)], {
    stdio: ["ignore", "ignore", "inherit", "pipe"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    (child.stdio[3] as NodeJS.ReadableStream | null)?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`bench guard exited with ${code}`)));
  });
  return { port, pid: child.pid ?? 0, stop: () => child.kill("SIGTERM") };
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU time (user + system, all threads) a process has used, in µs; 0 when unknown. */
function cpuUs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

function rssMb(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** Sets the CPU affinity of every thread of `pid` (a process that has exited is skipped). */
function setAffinity(pid: number, cpus: string): void {
  try {
    execFileSync("taskset", ["-a", "-cp", cpus, String(pid)], { stdio: "ignore" });
  } catch {
    // gone, e.g. a backend that ended with its pgbench connection
  }
}

/**
 * Applies `placement` to PostgreSQL (the postmaster, whose affinity new backends inherit, and
 * every running backend: PgBouncer's and the guards' server connections outlive a run) and to the
 * proxies; returns the cores for pgbench (undefined: any).
 */
function place(pg: PostgresServer, proxyPids: number[], placement: Placement): string | undefined {
  const all = `0-${availableParallelism() - 1}`;
  const postmaster = Number(readFileSync(join(pg.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  let backends: number[] = [];
  try {
    backends = execFileSync("pgrep", ["-P", String(postmaster)], { encoding: "utf8" })
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    // no children yet
  }
  const db = placement === "pinned" ? "0" : all;
  for (const pid of [postmaster, ...backends]) setAffinity(pid, db);
  for (const pid of proxyPids) setAffinity(pid, placement === "pinned" ? "1" : all);
  return placement === "pinned" ? "0" : undefined;
}

/**
 * `seconds` per path and workload, run as `rounds` interleaved runs (every path once per round,
 * so a burst of load elsewhere on the machine hits all paths alike); TPS is the median run.
 */
export async function benchPostgres(opts: {
  seconds: number;
  clients: number;
  scale?: number;
  rounds?: number;
  /** Default: both where the machine has two cores or more, else shared. */
  placements?: Placement[];
  log: (s: string) => void;
}): Promise<PostgresBench> {
  const placements = opts.placements ?? (availableParallelism() >= 2 ? ["shared", "pinned"] : ["shared"]);
  const pg = await startPostgres({ settings: { max_connections: 300 } });
  const cleanup: (() => Promise<void> | void)[] = [() => pg.stop()];
  try {
    const scale = opts.scale ?? 5;
    opts.log(`  postgres: pgbench -i -s ${scale}`);
    await pg.initPgbench(scale);
    const scripts = await mkdtemp(join(tmpdir(), "airlock-pgbench-"));
    cleanup.push(() => rm(scripts, { recursive: true, force: true }));
    const rowsScript = join(scripts, "rows.sql");
    await writeFile(
      rowsScript,
      `\\set a random(1, ${100_000 * scale - 999})\nSELECT aid, bid, abalance, filler FROM pgbench_accounts WHERE aid BETWEEN :a AND :a + 999;\n`,
    );
    const user = pg.users.scram;
    const bouncer = await startPgbouncer(pg, user, Math.max(2, opts.clients));
    cleanup.push(() => bouncer.stop());
    const plain = await spawnGuard({ policy: pgPolicy(pg, { rules: BENCH_RULES }), credential: user });
    cleanup.push(() => plain.stop());
    const masked = await spawnGuard({
      policy: pgPolicy(pg, { rules: BENCH_RULES, masking: BENCH_MASKING }),
      credential: user,
    });
    cleanup.push(() => masked.stop());

    // [name, libpq environment, pid of the proxy process]
    const paths: [string, NodeJS.ProcessEnv, number | undefined][] = [
      [
        "direct",
        { PGHOST: "127.0.0.1", PGPORT: String(pg.port), PGUSER: user.user, PGPASSWORD: user.password },
        undefined,
      ],
      ["pgbouncer", { PGHOST: "127.0.0.1", PGPORT: String(bouncer.port), PGUSER: user.user }, bouncer.pid],
      ["sidecar", { PGHOST: "127.0.0.1", PGPORT: String(plain.port), PGUSER: "agent" }, plain.pid],
      [
        "sidecar + masking",
        { PGHOST: "127.0.0.1", PGPORT: String(masked.port), PGUSER: "agent" },
        masked.pid,
      ],
    ];
    const workloads: [string, string[]][] = [
      ["select-only", ["-S"]],
      ["select-only prepared", ["-S", "-M", "prepared"]],
      ["tpcb-like", []],
      ["1000-row select", ["-f", rowsScript]],
    ];
    const threads = Math.min(2, opts.clients);
    const rounds = Math.max(1, opts.rounds ?? 3);
    const runSeconds = Math.max(1, Math.round(opts.seconds / rounds));
    const run = (args: string[], env: NodeJS.ProcessEnv, seconds: number, cpus?: string) =>
      pgbench(
        [
          ...args,
          "-n",
          "-c",
          String(opts.clients),
          "-j",
          String(threads),
          "-T",
          String(seconds),
          pg.database,
        ],
        env,
        300_000,
        cpus,
      );
    const proxyPids = paths.flatMap(([, , pid]) => (pid ? [pid] : []));
    const rows: PostgresBenchRow[] = [];
    for (const [workload, args] of workloads) {
      opts.log(
        `  postgres: ${workload}: ${rounds} × ${runSeconds}s on each path, ${placements.join(" and ")} (${opts.clients} clients)`,
      );
      const runs = placements.map(() =>
        paths.map(() => ({ tps: [] as number[], latency: [] as number[], tx: 0, failed: 0, cpu: 0 })),
      );
      // A short warm-up (JIT, caches) on each path, then the measured rounds.
      place(pg, proxyPids, "shared");
      for (const [, env] of paths) await run(args, env, 1);
      for (let round = 0; round < rounds; round++) {
        for (const [pi, placement] of placements.entries()) {
          const cpus = place(pg, proxyPids, placement);
          for (const [i, [, env, pid]] of paths.entries()) {
            const acc = runs[pi]?.[i] as (typeof runs)[number][number];
            const cpu0 = pid ? cpuUs(pid) : 0;
            const r = await run(args, env, runSeconds, cpus);
            if (pid) acc.cpu += cpuUs(pid) - cpu0;
            acc.tps.push(r.tps);
            acc.latency.push(r.latencyMs);
            acc.tx += r.transactions;
            acc.failed += r.failed;
          }
        }
      }
      for (const [pi, placement] of placements.entries())
        for (const [i, [path, , pid]] of paths.entries()) {
          const acc = runs[pi]?.[i] as (typeof runs)[number][number];
          rows.push({
            placement,
            workload,
            path,
            result: {
              tps: median(acc.tps),
              latencyMs: median(acc.latency),
              transactions: acc.tx,
              failed: acc.failed,
            },
            ...(pid && acc.tx > 0 ? { proxyCpuUsPerTx: acc.cpu / acc.tx } : {}),
          });
        }
    }
    place(pg, proxyPids, "shared");
    const sidecarRssMb = Math.max(rssMb(plain.pid), rssMb(masked.pid));
    const ratios: PostgresBench["ratios"] = [];
    for (const placement of placements)
      for (const [workload] of workloads) {
        const of = (p: string) =>
          rows.find((r) => r.placement === placement && r.workload === workload && r.path === p)?.result;
        const direct = of("direct");
        const bouncerR = of("pgbouncer");
        for (const p of ["sidecar", "sidecar + masking"]) {
          const s = of(p);
          if (!direct || !bouncerR || !s) continue;
          ratios.push({
            placement,
            workload,
            path: p,
            vsPgbouncer: s.tps / bouncerR.tps,
            vsDirect: s.tps / direct.tps,
            addedLatencyMs: s.latencyMs - direct.latencyMs,
          });
        }
      }
    return { rows, rounds, runSeconds, sidecarRssMb, ratios, placements };
  } finally {
    for (const c of cleanup.reverse()) await c();
  }
}

/** Markdown table for the report. */
export function formatPostgresBench(b: PostgresBench, opts: { seconds: number; clients: number }): string {
  const fmt = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");
  const out = [
    `PostgreSQL pgbench, ${opts.clients} clients, ${b.rounds} interleaved rounds × ${b.runSeconds}s per path, median TPS (sidecar RSS after load: ${fmt(b.sidecarRssMb, 0)} MB; proxy CPU: the proxy process's CPU time per transaction)`,
  ];
  const titles: Record<Placement, string> = {
    shared: "shared: pgbench, PostgreSQL and the proxy on the same cores",
    pinned: "pinned: pgbench and PostgreSQL on core 0, the proxy alone on core 1 (a sidecar's own CPU)",
  };
  for (const placement of b.placements) {
    const rows = b.rows.filter((r) => r.placement === placement);
    out.push(
      "",
      titles[placement],
      "| workload | path | TPS | × direct | × PgBouncer | latency ms | added ms | proxy CPU µs/tx | failed |",
      "|---|---|---|---|---|---|---|---|---|",
    );
    for (const r of rows) {
      const direct = rows.find((x) => x.workload === r.workload && x.path === "direct")?.result;
      const bouncer = rows.find((x) => x.workload === r.workload && x.path === "pgbouncer")?.result;
      out.push(
        `| ${r.workload} | ${r.path} | ${fmt(r.result.tps, 0)} | ${fmt(direct ? r.result.tps / direct.tps : Number.NaN)} | ${fmt(bouncer ? r.result.tps / bouncer.tps : Number.NaN)} | ${fmt(r.result.latencyMs, 3)} | ${fmt(direct ? r.result.latencyMs - direct.latencyMs : Number.NaN, 3)} | ${r.proxyCpuUsPerTx === undefined ? "" : fmt(r.proxyCpuUsPerTx, 1)} | ${r.result.failed} |`,
      );
    }
  }
  return out.join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      serve: { type: "string" },
      seconds: { type: "string", default: "6" },
      clients: { type: "string", default: "8" },
      scale: { type: "string", default: "5" },
      rounds: { type: "string", default: "3" },
      placement: { type: "string" },
    },
  });
  if (values.placement && values.placement !== "shared" && values.placement !== "pinned") {
    process.stderr.write(`--placement must be shared or pinned, got ${values.placement}\n`);
    process.exit(2);
  }
  if (values.serve) {
    await serve(JSON.parse(values.serve) as ServeConfig);
  } else {
    const seconds = Number(values.seconds);
    const clients = Number(values.clients);
    const steal = stealMeter();
    const b = await benchPostgres({
      seconds,
      clients,
      scale: Number(values.scale),
      rounds: Number(values.rounds),
      ...(values.placement ? { placements: [values.placement as Placement] } : {}),
      log: (s) => process.stderr.write(`${s}\n`),
    });
    process.stdout.write(`${formatPostgresBench(b, { seconds, clients })}\n\n${stealLine(steal.stop())}\n`);
  }
}
