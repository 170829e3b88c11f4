// CPU, system calls and CPU profile of the HTTP guard per request, for comparing source trees (a
// commit checked out elsewhere against this one) on a shared machine. Each tree's sidecar runs as
// the image runs it (the Dockerfile's flags, a warm compile cache), pinned to the last core, with
// the load (wrk), the upstream and nginx on core 0. Rounds are interleaved across trees; the
// sidecar's CPU per request comes from /proc, requests from the upstream's own count.
//
//   node test/bench/http-profile.ts --tree ../other-tree --tree . [--masked] [--seconds 4]
//        [--rounds 3] [--connections 16] [--rate 1000] [--profile] [--syscalls] [--fds] [--top 30]
//        [--stdout pipe|null]
//
// --syscalls counts the system calls of each measured run by kind with perf's syscall
// tracepoints (cheap: the sidecar runs at nearly full speed, so its batching is what it is
// without a tracer). --fds runs one more short load per tree under `strace -f -yy` and splits
// the I/O calls by file descriptor: the agent's sockets, the upstream's, stdout. --rate adds a
// fixed-rate run (autocannon, open loop) per tree: CPU and system calls per request when the
// sidecar is not saturated (each request its own event-loop turn). --stdout pipe gives the
// sidecar a pipe for stdout, read by this process, as a log collector would (the bench gives it
// /dev/null).
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs, promisify } from "node:util";
import autocannon from "autocannon";
import { freePort } from "../harness/ports.ts";
import { aggregateProfile, type CpuProfile } from "./cpu-profile.ts";
import { startUpstream } from "./http.ts";
import { startNginx, waitForPort } from "./nginx.ts";
import { imageNodeOptions } from "./sidecar-process.ts";
import { wrk } from "./wrk.ts";

const { values } = parseArgs({
  options: {
    tree: { type: "string", multiple: true },
    masked: { type: "boolean", default: false },
    seconds: { type: "string", default: "4" },
    rounds: { type: "string", default: "3" },
    connections: { type: "string", default: "16" },
    rate: { type: "string" },
    profile: { type: "boolean", default: false },
    syscalls: { type: "boolean", default: false },
    fds: { type: "boolean", default: false },
    top: { type: "string", default: "30" },
    stdout: { type: "string", default: "null" },
    /** Also measure the floors of http-floor.ts: Node's own HTTP server and client, no Airlock. */
    floor: { type: "boolean", default: false },
  },
});
const log = (s: string) => process.stderr.write(`${s}\n`);
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const last = String(availableParallelism() - 1);

/** A tree, optionally with Node/V8 flags of its own after "#" (comma-separated). */
const trees = (values.tree ?? ["."]).map((t, i) => {
  const [dir = ".", flags] = t.split("#");
  return { name: `[${i}] ${t}`, dir: resolve(dir), flags: flags ? flags.split(",") : [] };
});

function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1_000_000) / 100;
}

/** System (kernel) CPU µs of a process so far. */
function sysUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[12]) * 1_000_000) / 100;
}

function pin(pid: number, cpus: string): void {
  try {
    execFileSync("taskset", ["-a", "-cp", cpus, String(pid)], { stdio: "ignore" });
  } catch {
    // exited
  }
}

function policy(upstreamPort: number, port: number, masked: boolean): string {
  return `apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: bench, namespace: default }
spec:
  connections:
    - name: plain
      protocol: http
      target: { host: 127.0.0.1, port: ${upstreamPort} }
      tls: { mode: disable }
      credentials: { secretRef: { name: bench }, http: { key: token } }
      listen: { port: ${port} }
  rules:
    - { name: no-admin, action: deny, match: { http: { paths: ["/admin/**"] } } }
    - { name: read, action: allow, match: { http: { methods: [GET], paths: ["/customers", "/customers/**"] } } }
${
  masked
    ? `  masking:
    - { name: pii, connections: [plain], detectors: [email, phone, creditCard], strategy: partial }
    - { name: secrets, connections: [plain], detectors: [secrets], strategy: redact }
`
    : ""
}`;
}

interface Sidecar {
  name: string;
  child: ChildProcess;
  pid: number;
  port: number;
  profDir: string;
  stdoutBytes: number;
}

async function spawnSidecar(
  tree: (typeof trees)[number],
  upstreamPort: number,
  dir: string,
): Promise<Sidecar> {
  const [port, adminPort, proxyPort] = (await Promise.all([freePort(), freePort(), freePort()])) as [
    number,
    number,
    number,
  ];
  const work = mkdtempSync(join(dir, "sidecar-"));
  writeFileSync(join(work, "policy.yaml"), policy(upstreamPort, port, values.masked));
  const cache = join(tree.dir, ".airlock", "compile-cache");
  const flags = [...imageNodeOptions(), ...tree.flags];
  await promisify(execFile)(
    process.execPath,
    [...flags, join(tree.dir, "bin", "warm-compile-cache.mjs"), cache],
    { cwd: tree.dir, env: { ...process.env, NODE_OPTIONS: "" }, timeout: 120_000 },
  );
  const profDir = join(work, "prof");
  const child = spawn(
    process.execPath,
    [
      ...flags,
      ...(values.profile ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`, "--cpu-prof-interval=200"] : []),
      join(tree.dir, "bin", "airlock.js"),
      "sidecar",
      "--policy",
      join(work, "policy.yaml"),
      "--secrets",
      join(dir, "secrets"),
      "--admin-port",
      String(adminPort),
      "--proxy-port",
      String(proxyPort),
      "--hash-key-file",
      join(work, "hash.key"),
      "--log-level",
      "warn",
    ],
    {
      cwd: tree.dir,
      stdio: ["ignore", values.stdout === "pipe" ? "pipe" : "ignore", "inherit"],
      env: { ...process.env, NODE_COMPILE_CACHE: cache, NODE_OPTIONS: "" },
    },
  );
  const s: Sidecar = { name: tree.name, child, pid: child.pid ?? 0, port, profDir, stdoutBytes: 0 };
  child.stdout?.on("data", (d: Buffer) => {
    s.stdoutBytes += d.length;
  });
  await waitForPort(port, () => (child.exitCode !== null ? `sidecar of ${tree.name} exited` : undefined));
  pin(s.pid, last);
  return s;
}

const SYSCALLS = [
  "read",
  "readv",
  "write",
  "writev",
  "epoll_wait",
  "epoll_pwait",
  "epoll_pwait2",
  "epoll_ctl",
  "futex",
  "mmap",
  "munmap",
  "mprotect",
  "madvise",
  "getpid",
  "accept4",
  "close",
  "setsockopt",
  "getsockopt",
  "ioctl",
  "statx",
];

/** Starts counting the system calls of `pid` by kind; the returned function stops and reads. */
function countSyscalls(pid: number): () => Promise<Map<string, number>> {
  const events = [...SYSCALLS.map((s) => `syscalls:sys_enter_${s}`), "raw_syscalls:sys_enter"];
  const out = join(mkdtempSync(join(tmpdir(), "airlock-perf-")), "stat.txt");
  const perf = spawn("perf", ["stat", "-x", ",", "-o", out, "-e", events.join(","), "-p", String(pid)], {
    stdio: "ignore",
  });
  return async () => {
    const exited = new Promise<void>((r) => perf.once("exit", () => r()));
    perf.kill("SIGINT");
    await exited;
    const counts = new Map<string, number>();
    for (const line of readFileSync(out, "utf8").split("\n")) {
      const [v, , ev] = line.split(",");
      if (!ev || !v || Number.isNaN(Number(v))) continue;
      const name = ev.replace(/^syscalls:sys_enter_/, "").replace(/^raw_syscalls:sys_enter$/, "(all)");
      counts.set(name, Number(v));
    }
    return counts;
  };
}

/** Splits a strace -f -yy log's I/O calls by the kind of file descriptor. */
function classifyStrace(file: string, agentPort: number, upstreamPort: number): Map<string, number> {
  const counts = new Map<string, number>();
  const add = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
  for (const line of readFileSync(file, "utf8").split("\n")) {
    // The fd decoration (-yy) holds "->" between the socket's ends: read it up to the argument's end.
    const m = /^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\((\d+)(<[^,)]*>)?/.exec(line);
    if (!m) {
      const n = /^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\w+)\(/.exec(line);
      if (n) add(`${n[1]} (no fd)`);
      continue;
    }
    const [, call, fd, deco = ""] = m;
    let kind = "other fd";
    if (fd === "1") kind = "stdout";
    else if (deco.includes(`127.0.0.1:${agentPort}->`)) kind = "agent socket";
    else if (deco.includes(`->127.0.0.1:${upstreamPort}]`)) kind = "upstream socket";
    else if (deco.includes("anon_inode:[eventpoll]")) kind = "epoll";
    add(`${call} ${kind}`);
  }
  return counts;
}

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

const dir = mkdtempSync(join(tmpdir(), "airlock-httpprof-"));
mkdirSync(join(dir, "secrets", "bench"), { recursive: true });
writeFileSync(join(dir, "secrets", "bench", "token"), "bench-token");
const [upPort, nginxPort] = (await Promise.all([freePort(), freePort()])) as [number, number];
let served = 0;
const upstream = await startUpstream(upPort, () => {
  served++;
});
const nginx = await startNginx({ listenPort: nginxPort, upstreamPort: upPort });
// wrk and the upstream (this process and its children) on core 0; the proxies on the last core.
pin(process.pid, "0");
// nginx's worker (the master only waits): its CPU is what a request costs nginx.
const nginxWorker = Number(
  execFileSync("pgrep", ["-P", String(nginx.process.pid)], { encoding: "utf8" })
    .trim()
    .split("\n")[0],
);
pin(nginxWorker, last);
const sidecars: Sidecar[] = [];
const floors: { name: string; port: number; pid: number; child: ChildProcess }[] = [];
try {
  for (const t of trees) sidecars.push(await spawnSidecar(t, upPort, dir));
  const load = (port: number, s: number, headers?: Record<string, string>) =>
    wrk(`http://127.0.0.1:${port}/customers`, { seconds: s, connections, ...(headers ? { headers } : {}) });
  if (values.floor)
    for (const mode of (process.env.HTTPPROF_FLOORS ?? "node,undici").split(",")) {
      const port = await freePort();
      const child = spawn(
        process.execPath,
        [
          ...imageNodeOptions(),
          join(import.meta.dirname, "http-floor.ts"),
          mode,
          String(port),
          String(upPort),
        ],
        { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, NODE_OPTIONS: "" } },
      );
      try {
        await waitForPort(port, () => (child.exitCode !== null ? `floor ${mode} exited` : undefined));
      } catch (err) {
        log(`skipping the ${mode} floor: ${(err as Error).message}`);
        child.kill();
        continue;
      }
      pin(child.pid as number, last);
      floors.push({ name: `floor: ${mode}`, port, pid: child.pid as number, child });
      await load(port, 1);
    }
  for (const s of sidecars) await load(s.port, 1);
  await load(nginxPort, 1);
  interface Acc {
    us: number;
    kernelUs: number;
    req: number;
    rps: number[];
    perRound: number[];
    windows: [number, number][];
    sys: Map<string, number>;
  }
  const acc = new Map<string, Acc>();
  const get = (k: string) => {
    let a = acc.get(k);
    if (!a) {
      a = { us: 0, kernelUs: 0, req: 0, rps: [], perRound: [], windows: [], sys: new Map() };
      acc.set(k, a);
    }
    return a;
  };
  const rounds = Number(values.rounds);
  const targets: { name: string; port: number; pid: number | undefined; sidecar?: Sidecar }[] = [
    { name: "nginx", port: nginxPort, pid: nginxWorker },
    ...floors,
    ...sidecars.map((s) => ({ name: s.name, port: s.port, pid: s.pid, sidecar: s })),
  ];
  for (let r = 0; r < rounds; r++)
    for (const t of targets) {
      const pid = t.pid as number;
      const c0 = cpuUs(pid);
      const k0 = sysUs(pid);
      const n0 = served;
      const stop = values.syscalls ? countSyscalls(pid) : undefined;
      const w0 = nowUs();
      const res = await load(t.port, seconds);
      const w1 = nowUs();
      const sys = stop ? await stop() : undefined;
      const used = cpuUs(pid) - c0;
      const req = served - n0;
      const a = get(t.name);
      a.us += used;
      a.kernelUs += sysUs(pid) - k0;
      a.req += req;
      a.rps.push(res.rps);
      a.perRound.push(used / Math.max(1, req));
      a.windows.push([w0, w1]);
      for (const [k, v] of sys ?? []) a.sys.set(k, (a.sys.get(k) ?? 0) + v);
      if (res.errors) log(`${t.name}: ${res.errors} errors`);
    }
  if (values.rate)
    for (const t of targets) {
      const pid = t.pid as number;
      const c0 = cpuUs(pid);
      const n0 = served;
      const stop = values.syscalls ? countSyscalls(pid) : undefined;
      const r = await autocannon({
        url: `http://127.0.0.1:${t.port}/customers`,
        connections: 16,
        duration: seconds,
        overallRate: Number(values.rate),
      });
      const sys = stop ? await stop() : undefined;
      const used = cpuUs(pid) - c0;
      const req = served - n0;
      const a = get(`${t.name} @${values.rate}/s`);
      a.us += used;
      a.req += req;
      a.rps.push(r.requests.average);
      a.perRound.push(used / Math.max(1, req));
      for (const [k, v] of sys ?? []) a.sys.set(k, (a.sys.get(k) ?? 0) + v);
      log(`${t.name} @${values.rate}/s: p50 ${r.latency.p50} p99 ${r.latency.p99} ms`);
    }
  const nginxRps = (acc.get("nginx") as Acc).rps;
  const load1 = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const lines = [
    `HTTP GET ~1 KB JSON${values.masked ? " + JSON masking" : ""}, wrk ${connections} connections × ${seconds}s × ${rounds} rounds, stdout ${values.stdout}; load average ${load1}`,
  ];
  for (const [name, a] of acc) {
    const ratio = name.startsWith("nginx")
      ? ""
      : ` (${(a.rps.reduce((x, y) => x + y, 0) / nginxRps.reduce((x, y) => x + y, 0)).toFixed(2)} × nginx req/s)`;
    lines.push(
      `  ${name}: ${(a.us / a.req).toFixed(1)} µs/req CPU (kernel ${(a.kernelUs / a.req).toFixed(1)}); µs/req per round ${a.perRound.map((x) => x.toFixed(0)).join(" ")}; req/s ${a.rps.map((x) => x.toFixed(0)).join(" ")}${ratio}`,
    );
    if (a.sys.size > 0)
      lines.push(
        `    syscalls/req: ${[...a.sys]
          .filter(([, v]) => v / a.req >= 0.005)
          .sort((x, y) => y[1] - x[1])
          .map(([k, v]) => `${k} ${(v / a.req).toFixed(2)}`)
          .join(", ")}`,
      );
  }
  for (const s of sidecars) {
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${s.pid}/status`, "utf8"))?.[1];
    lines.push(`  ${s.name} RSS after the runs: ${(Number(rss) / 1024).toFixed(0)} MB`);
  }
  process.stdout.write(`${lines.join("\n")}\n`);

  if (values.fds)
    for (const s of sidecars) {
      const file = join(dir, `strace-${s.pid}.txt`);
      const tracer = spawn("strace", ["-f", "-yy", "-qq", "-o", file, "-p", String(s.pid)], {
        stdio: "ignore",
      });
      await new Promise((r) => setTimeout(r, 500));
      const n0 = served;
      await load(s.port, 2);
      const req = served - n0;
      const exited = new Promise<void>((r) => tracer.once("exit", () => r()));
      tracer.kill("SIGINT");
      await exited;
      const counts = classifyStrace(file, s.port, upPort);
      process.stdout.write(
        `\n${s.name} under strace (${req} requests): calls per request by file descriptor\n${[...counts]
          .filter(([, v]) => v / req >= 0.005)
          .sort((x, y) => y[1] - x[1])
          .map(([k, v]) => `  ${(v / req).toFixed(2).padStart(6)}  ${k}`)
          .join("\n")}\n`,
      );
      rmSync(file, { force: true });
    }

  if (values.profile) {
    const aggs: { name: string; self: Map<string, number>; total: Map<string, number> }[] = [];
    for (const s of sidecars) {
      const exited = new Promise<void>((r) => s.child.once("exit", () => r()));
      s.child.kill("SIGTERM");
      await exited;
      const file = readdirSync(s.profDir).find((f) => f.endsWith(".cpuprofile"));
      if (!file) {
        log(`no profile from ${s.name}`);
        continue;
      }
      if (process.env.HTTPPROF_KEEP)
        writeFileSync(
          `${process.env.HTTPPROF_KEEP}-${s.pid}.cpuprofile`,
          readFileSync(join(s.profDir, file)),
        );
      const c = acc.get(s.name) as Acc;
      const a = aggregateProfile(
        JSON.parse(readFileSync(join(s.profDir, file), "utf8")) as CpuProfile,
        c.windows,
      );
      const scale = c.us / c.req / a.busy;
      const perReq = (m: Map<string, number>) => new Map([...m].map(([k, v]) => [k, v * scale]));
      aggs.push({ name: s.name, self: perReq(a.self), total: perReq(a.total) });
    }
    const top = Number(values.top);
    for (const kind of ["self", "total"] as const) {
      const keys = new Set(aggs.flatMap((a) => [...a[kind].keys()]));
      const rows = [...keys].map((k) => ({ k, v: aggs.map((a) => a[kind].get(k) ?? 0) }));
      rows.sort((x, y) => Math.max(...y.v) - Math.max(...x.v));
      process.stdout.write(
        `\n${kind} µs/req (scaled to each tree's measured CPU per request) — ${aggs.map((a) => a.name).join("  ")}\n`,
      );
      for (const r of rows.slice(0, top))
        process.stdout.write(`${r.v.map((x) => x.toFixed(1).padStart(8)).join("")}  ${r.k}\n`);
    }
  }
} finally {
  for (const s of sidecars) s.child.kill("SIGTERM");
  for (const f of floors) f.child.kill("SIGTERM");
  nginx.stop();
  upstream.close();
  upstream.closeAllConnections();
  rmSync(dir, { recursive: true, force: true });
}
