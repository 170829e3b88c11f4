// CPU profile of the PostgreSQL guard on one pgbench workload, for comparing source trees (e.g.
// a commit checked out in another worktree against this one) on a machine too noisy for wall
// times. Each tree's guard runs in its own process through that tree's `test/bench/postgres.ts
// --serve` (as `npm run bench` runs it), pinned to the last core, with V8's CPU profiler on;
// pgbench and PostgreSQL run on core 0. Runs are interleaved per round; the guard's CPU per
// transaction is read from /proc, and the profile's self and total time per function are
// reported per transaction (µs), the functions that differ most between trees first.
//
// Read and write system calls per transaction are timing, not work: a guard that wakes as soon as
// the server's first 8 KiB arrive reads a result in more, smaller pieces than one that is busy
// (the same code made 7 or 14 reads per 1000-row result from run to run). Compare CPU over many
// rounds (the per-round spread says how far to trust a difference) and the profiles' functions.
//
//   node test/bench/pg-profile.ts --tree ../other-tree --tree . [--workload rows|select|prepared|tpcb]
//        [--masking] [--transactions 2000] [--clients 8] [--rounds 3] [--top 40] [--no-profile]
//        [--gc] [--guard-flag=--v8-flag ...] [--callers nextTick]
//   A tree may carry Node/V8 flags of its own: --tree '.#--initial-heap-size=64' --tree .
//   PGPROF_GC_LOG=file keeps the guards' raw --trace-gc lines of the measured runs (with --gc).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { appendFileSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { startPostgres } from "../harness/postgres.ts";
import { pgPolicy } from "../postgres/support.ts";
import { aggregateProfile, type CpuProfile } from "./cpu-profile.ts";
import { pgbench, startPgbouncer } from "./postgres.ts";

const { values } = parseArgs({
  options: {
    tree: { type: "string", multiple: true },
    workload: { type: "string", default: "rows" },
    masking: { type: "boolean", default: false },
    transactions: { type: "string", default: "2000" },
    clients: { type: "string", default: "8" },
    rounds: { type: "string", default: "3" },
    top: { type: "string", default: "40" },
    /** Also list the call paths (4 frames up) of the samples whose own function is named this. */
    callers: { type: "string" },
    "no-profile": { type: "boolean", default: false },
    /**
     * Count the guards' garbage collections (V8's --trace-gc on their stdout) during the measured
     * runs. Their stdout becomes a pipe, so their audit lines cost more: compare CPU without it.
     */
    gc: { type: "boolean", default: false },
    /** Extra Node/V8 flags for the guards (e.g. --guard-flag=--max-semi-space-size=16). */
    "guard-flag": { type: "string", multiple: true },
    pgbouncer: { type: "boolean", default: true },
    /** A new connection per transaction (pgbench -C): the per-session cost. */
    connect: { type: "boolean", default: false },
  },
});
/** A tree, optionally with Node/V8 flags of its own after "#" (e.g. `.#--max-semi-space-size=4`). */
const trees = (values.tree ?? ["."]).map((t) => {
  const [dir = ".", flags] = t.split("#");
  return {
    name: flags ? `${resolve(dir)}#${flags}` : resolve(dir),
    dir: resolve(dir),
    flags: flags ? flags.split(",") : [],
  };
});
const clients = Number(values.clients);
const perClient = Math.max(1, Math.round(Number(values.transactions) / clients));
const rounds = Number(values.rounds);
const profile = !values["no-profile"];
const log = (s: string) => process.stderr.write(`${s}\n`);

// The rules and masking of test/bench/postgres.ts.
const RULES = [
  { name: "no-ddl", action: "deny", match: { sql: { statements: ["create", "alter", "drop", "truncate"] } } },
  {
    name: "bench",
    action: "allow",
    match: { sql: { statements: ["read", "write", "transaction", "set"], tables: ["pgbench_*"] } },
  },
  { name: "session", action: "allow", match: { sql: { statements: ["transaction", "set", "show"] } } },
] as const;
const MASKING = [
  { name: "pii", columns: ["card_number", "email"], detectors: ["email", "creditCard"], strategy: "partial" },
] as const;

function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1_000_000) / 100;
}

/** Read and write system calls of a process so far (/proc/<pid>/io). */
function syscalls(pid: number): { r: number; w: number } {
  try {
    const io = readFileSync(`/proc/${pid}/io`, "utf8");
    return { r: Number(/syscr: (\d+)/.exec(io)?.[1] ?? 0), w: Number(/syscw: (\d+)/.exec(io)?.[1] ?? 0) };
  } catch {
    return { r: 0, w: 0 };
  }
}

function pin(pid: number, cpus: string): void {
  try {
    execFileSync("taskset", ["-a", "-cp", cpus, String(pid)], { stdio: "ignore" });
  } catch {
    // exited
  }
}

interface Guard {
  tree: string;
  child: ChildProcess;
  pid: number;
  port: number;
  profDir: string;
  /** Collections seen while `gc.on` (a measured run of this guard): count and pause ms per kind. */
  gc: { on: boolean; scavenge: number; scavengeMs: number; markCompact: number; markCompactMs: number };
}

async function spawnGuard(spec: (typeof trees)[number], config: unknown): Promise<Guard> {
  const tree = spec.name;
  const profDir = await mkdtemp(join(tmpdir(), "airlock-pgprof-"));
  const child = spawn(
    process.execPath,
    [
      ...(values.gc ? ["--trace-gc"] : []),
      ...(values["guard-flag"] ?? []),
      ...spec.flags,
      join(spec.dir, "test/bench/postgres.ts"),
      "--serve",
      JSON.stringify(config),
    ],
    {
      cwd: spec.dir,
      stdio: ["ignore", values.gc ? "pipe" : "ignore", "inherit", "pipe"],
      env: {
        ...process.env,
        ...(profile ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir} --cpu-prof-interval=250` } : {}),
      },
    },
  );
  const gc = { on: false, scavenge: 0, scavengeMs: 0, markCompact: 0, markCompactMs: 0 };
  if (child.stdout) {
    let rest = "";
    child.stdout.on("data", (d: Buffer) => {
      const lines = (rest + d.toString()).split("\n");
      rest = lines.pop() ?? "";
      if (!gc.on) return;
      if (process.env.PGPROF_GC_LOG)
        appendFileSync(process.env.PGPROF_GC_LOG, `${tree}\n${lines.join("\n")}\n`);
      for (const l of lines) {
        // [pid:0x...]   1234 ms: Scavenge 10.1 (12.0) -> 9.8 (13.0) MB, pooled: 0 MB, 0.52 / 0.00 ms ...
        const m =
          /ms: (Scavenge|Mark-Compact|Minor Mark-Sweep)\b.*?MB, (?:pooled: [\d.]+ MB, )?([\d.]+) \/ /.exec(l);
        if (!m) continue;
        if (m[1] === "Mark-Compact") {
          gc.markCompact++;
          // The final pause and the incremental steps before it (both on the main thread).
          gc.markCompactMs += Number(m[2]) + Number(/\(\+ ([\d.]+) ms in/.exec(l)?.[1] ?? 0);
        } else {
          gc.scavenge++;
          gc.scavengeMs += Number(m[2]);
        }
      }
    });
  }
  const port = await new Promise<number>((res, rej) => {
    let out = "";
    (child.stdio[3] as NodeJS.ReadableStream).on("data", (d: Buffer) => {
      out += d.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) res(Number(m[1]));
    });
    child.once("exit", (code) => rej(new Error(`guard of ${tree} exited with ${code}`)));
  });
  return { tree, child, pid: child.pid ?? 0, port, profDir, gc };
}

/** Monotonic µs, the clock of V8's profile timestamps (CLOCK_MONOTONIC on Linux). */
const nowUs = () => Number(process.hrtime.bigint() / 1000n);

const pg = await startPostgres({ settings: { max_connections: 300 } });
const cleanups: (() => Promise<void> | void)[] = [() => pg.stop()];
try {
  await pg.initPgbench(5);
  const scripts = await mkdtemp(join(tmpdir(), "airlock-pgbench-"));
  cleanups.push(() => rm(scripts, { recursive: true, force: true }));
  const rowsScript = join(scripts, "rows.sql");
  await writeFile(
    rowsScript,
    `\\set a random(1, ${500_000 - 999})\nSELECT aid, bid, abalance, filler FROM pgbench_accounts WHERE aid BETWEEN :a AND :a + 999;\n`,
  );
  const args: Record<string, string[]> = {
    rows: ["-f", rowsScript],
    select: ["-S"],
    prepared: ["-S", "-M", "prepared"],
    tpcb: [],
  };
  const workload = args[values.workload] ?? [];
  const user = pg.users.scram;
  const config = {
    policy: pgPolicy(pg, {
      rules: [...RULES],
      ...(values.masking ? { masking: [...MASKING] } : {}),
    } as never),
    credential: user,
  };
  const guards: Guard[] = [];
  for (const tree of trees) guards.push(await spawnGuard(tree, config));
  const bouncer = values.pgbouncer ? await startPgbouncer(pg, user, clients) : undefined;
  if (bouncer) cleanups.push(() => bouncer.stop());
  const last = String(availableParallelism() - 1);
  const postmaster = Number(readFileSync(join(pg.dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
  const placeDb = () => {
    let backends: number[] = [];
    try {
      backends = execFileSync("pgrep", ["-P", String(postmaster)], { encoding: "utf8" })
        .split("\n")
        .filter(Boolean)
        .map(Number);
    } catch {}
    for (const pid of [postmaster, ...backends]) pin(pid, "0");
  };
  for (const g of guards) pin(g.pid, last);
  if (bouncer) pin(bouncer.pid, last);
  const targets: { name: string; pid: number; env: NodeJS.ProcessEnv; guard?: Guard }[] = [
    ...(bouncer
      ? [{ name: "pgbouncer", pid: bouncer.pid, env: { PGPORT: String(bouncer.port), PGUSER: user.user } }]
      : []),
    ...guards.map((g) => ({
      name: g.tree,
      pid: g.pid,
      env: { PGPORT: String(g.port), PGUSER: "agent" },
      guard: g,
    })),
  ];
  const run = (env: NodeJS.ProcessEnv, t: number) =>
    pgbench(
      [
        ...workload,
        ...(values.connect ? ["-C"] : []),
        "-n",
        "-c",
        String(clients),
        "-j",
        "2",
        "-t",
        String(t),
        pg.database,
      ],
      { PGHOST: "127.0.0.1", ...env },
      600_000,
      "0",
    );
  log(`warm-up: ${Math.max(1, Math.round(perClient / 4))} tx per client on each path`);
  for (const t of targets) await run(t.env, Math.max(1, Math.round(perClient / 4)));
  placeDb();
  const cpu = new Map<
    string,
    {
      us: number;
      tx: number;
      tps: number[];
      perRound: number[];
      windows: [number, number][];
      r: number;
      w: number;
    }
  >();
  for (let r = 0; r < rounds; r++)
    for (const t of targets) {
      const c0 = cpuUs(t.pid);
      const s0 = syscalls(t.pid);
      const w0 = nowUs();
      if (t.guard) t.guard.gc.on = true;
      const res = await run(t.env, perClient);
      if (t.guard) t.guard.gc.on = false;
      const w1 = nowUs();
      const acc = cpu.get(t.name) ?? { us: 0, tx: 0, tps: [], perRound: [], windows: [], r: 0, w: 0 };
      const used = cpuUs(t.pid) - c0;
      acc.us += used;
      acc.perRound.push(used / Math.max(1, res.transactions));
      const s1 = syscalls(t.pid);
      acc.r += s1.r - s0.r;
      acc.w += s1.w - s0.w;
      acc.windows.push([w0, w1]);
      acc.tx += res.transactions;
      acc.tps.push(res.tps);
      cpu.set(t.name, acc);
      if (res.failed) log(`${t.name}: ${res.failed} failed`);
    }
  const bouncerUs = bouncer ? (cpu.get("pgbouncer") as { us: number; tx: number }) : undefined;
  const bPerTx = bouncerUs ? bouncerUs.us / bouncerUs.tx : Number.NaN;
  const lines = [
    `workload ${values.workload}${values.masking ? " + masking" : ""}, ${clients} clients × ${perClient} tx × ${rounds} rounds`,
  ];
  for (const [name, a] of cpu)
    lines.push(
      `  ${name}: ${(a.us / a.tx).toFixed(1)} µs/tx CPU${name === "pgbouncer" ? "" : ` (${(a.us / a.tx / bPerTx).toFixed(2)} × pgbouncer)`}, reads/tx ${(a.r / a.tx).toFixed(1)} writes/tx ${(a.w / a.tx).toFixed(1)}, tps ${a.tps.map((x) => x.toFixed(0)).join(" ")}; µs/tx per round ${a.perRound.map((x) => x.toFixed(0)).join(" ")}`,
    );
  for (const g of guards) {
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${g.pid}/status`, "utf8"))?.[1];
    lines.push(`  ${g.tree} RSS after the runs: ${(Number(rss) / 1024).toFixed(0)} MB`);
  }
  if (values.gc)
    for (const g of guards) {
      const { tx } = cpu.get(g.tree) as { tx: number };
      const k = g.gc;
      lines.push(
        `  ${g.tree} GC per 1000 tx: ${((k.scavenge * 1000) / tx).toFixed(1)} scavenges (${((k.scavengeMs * 1000) / tx).toFixed(1)} ms), ${((k.markCompact * 1000) / tx).toFixed(2)} mark-compacts (${((k.markCompactMs * 1000) / tx).toFixed(1)} ms)`,
      );
    }
  process.stdout.write(`${lines.join("\n")}\n`);
  // Stop the guards (their profiles are written at exit) and compare.
  const aggs: {
    tree: string;
    self: Map<string, number>;
    total: Map<string, number>;
    callers: Map<string, number>;
    perTx: number;
  }[] = [];
  for (const g of guards) {
    const exited = new Promise<void>((r) => g.child.once("exit", () => r()));
    g.child.kill("SIGTERM");
    await exited;
    if (!profile) continue;
    const file = readdirSync(g.profDir).find((f) => f.endsWith(".cpuprofile"));
    if (!file) {
      log(`no profile from ${g.tree}`);
      continue;
    }
    const c = cpu.get(g.tree) as { us: number; tx: number; windows: [number, number][] };
    const a = aggregateProfile(
      JSON.parse(readFileSync(join(g.profDir, file), "utf8")) as CpuProfile,
      c.windows,
      values.callers,
    );
    // Samples of the measured runs only; their busy time scaled to the measured CPU per tx.
    const scale = c.us / c.tx / a.busy;
    const perTx = (m: Map<string, number>) => new Map([...m].map(([k, v]) => [k, v * scale]));
    aggs.push({
      tree: g.tree,
      self: perTx(a.self),
      total: perTx(a.total),
      callers: perTx(a.callers),
      perTx: c.us / c.tx,
    });
    await rm(g.profDir, { recursive: true, force: true });
  }
  const top = Number(values.top);
  for (const kind of ["self", "total", ...(values.callers ? (["callers"] as const) : [])] as const) {
    const keys = new Set(aggs.flatMap((a) => [...a[kind].keys()]));
    const rowsOut = [...keys].map((k) => ({ k, v: aggs.map((a) => a[kind].get(k) ?? 0) }));
    rowsOut.sort((x, y) => Math.max(...y.v) - Math.max(...x.v));
    process.stdout.write(
      `\n${kind} µs/tx (share of each tree's measured CPU per tx) — ${aggs.map((a, i) => `[${i}] ${a.tree}`).join("  ")}\n`,
    );
    for (const r of rowsOut.slice(0, top))
      process.stdout.write(`${r.v.map((x) => x.toFixed(1).padStart(8)).join("")}  ${r.k}\n`);
  }
} finally {
  for (const c of cleanups.reverse()) await c();
}
