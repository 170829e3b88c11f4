// Network namespaces for the egress-capture tests: an "agent" namespace (the pod: airlock-init's
// rules, the sidecar, agent processes) and an "upstream" namespace joined to it by a veth pair.
// Names are unique per run (pid + random); everything is removed in cleanup(), and namespaces left
// behind by a run that was killed are reaped on the next run (only those whose pid is gone).
// Test traffic never leaves these namespaces.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";

const NAME_PREFIX = "alk";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runSync(command: string, args: readonly string[], input?: string): RunResult {
  const r = spawnSync(command, [...args], { encoding: "utf8", input, timeout: 60_000 });
  return {
    code: r.status ?? (r.error ? 127 : 1),
    stdout: r.stdout ?? "",
    stderr: r.stderr || (r.error ? String(r.error.message) : ""),
  };
}

export function run(command: string, args: readonly string[], input?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(command, [...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", (err) => resolve({ code: 127, stdout, stderr: `${command}: ${err.message}` }));
    child.on("close", (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on("error", () => {});
    child.stdin.end(input ?? "");
  });
}

function must(command: string, args: readonly string[]): string {
  const r = runSync(command, args);
  if (r.code !== 0) throw new Error(`${command} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Why these tests cannot run here, or undefined when they can. Checked once, synchronously. */
export function missingFeature(): string | undefined {
  if (process.platform !== "linux") return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return "network namespaces and iptables need root (run the suite as root)";
  for (const tool of ["ip", "setpriv"]) {
    if (runSync("sh", ["-c", `command -v ${tool}`]).code !== 0)
      return `${tool} is not installed (apt-get install iproute2 util-linux)`;
  }
  const probe = `${NAME_PREFIX}-probe-${process.pid}-${randomBytes(2).toString("hex")}`;
  const add = runSync("ip", ["netns", "add", probe]);
  if (add.code !== 0) return `cannot create a network namespace: ${add.stderr.trim()}`;
  try {
    const saves = ["iptables-nft-save", "iptables-legacy-save"].map((s) =>
      runSync("ip", ["netns", "exec", probe, s]),
    );
    if (saves.every((r) => r.code !== 0))
      return `no working iptables in a network namespace (apt-get install iptables): ${saves
        .map((r) => r.stderr.trim())
        .join("; ")}`;
    const veth = runSync("ip", [
      "-n",
      probe,
      "link",
      "add",
      "vprobe0",
      "type",
      "veth",
      "peer",
      "name",
      "vprobe1",
    ]);
    if (veth.code !== 0) return `cannot create veth pairs: ${veth.stderr.trim()}`;
    if (!existsSync("/proc/net/if_inet6")) return "the kernel has no IPv6";
  } finally {
    runSync("ip", ["netns", "del", probe]);
  }
  return undefined;
}

/** Which iptables backends work inside a namespace on this machine. */
export function workingBackends(): ("nft" | "legacy")[] {
  const probe = `${NAME_PREFIX}-probe-${process.pid}-${randomBytes(2).toString("hex")}`;
  if (runSync("ip", ["netns", "add", probe]).code !== 0) return [];
  try {
    return (["nft", "legacy"] as const).filter(
      (b) =>
        runSync("ip", ["netns", "exec", probe, `iptables-${b}-save`]).code === 0 &&
        runSync("ip", ["netns", "exec", probe, `ip6tables-${b}-save`]).code === 0 &&
        runSync("ip", ["netns", "exec", probe, `iptables-${b}`, "-t", "nat", "-S"]).code === 0,
    );
  } finally {
    runSync("ip", ["netns", "del", probe]);
  }
}

/** Deletes namespaces of earlier runs whose process is gone (never those of a live run). */
export function reapStale(): void {
  const list = runSync("ip", ["netns", "list"]).stdout;
  for (const line of list.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const m = new RegExp(`^${NAME_PREFIX}-(?:probe-)?(\\d+)-`).exec(name);
    if (!m?.[1]) continue;
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive) {
      runSync("ip", ["netns", "del", name]);
      rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
    }
  }
}

export interface Topology {
  agent: string;
  upstream: string;
  /** Agent side and upstream side addresses. */
  agentV4: string;
  upstreamV4: string;
  /** A second upstream address, used as an excluded CIDR. */
  upstreamV4Excluded: string;
  agentV6: string;
  upstreamV6: string;
  upstreamV6Excluded: string;
  /** Extra /etc/hosts lines seen by processes started with `exec` in the agent namespace. */
  hosts(lines: Record<string, readonly string[]>): void;
  exec(ns: string, command: string, args: readonly string[], input?: string): Promise<RunResult>;
  cleanup(): void;
}

/** Two namespaces and a veth pair: 10.250.0.1 (agent) — 10.250.0.2, .3 (upstream), and IPv6 likewise. */
export function createTopology(): Topology {
  const id = `${process.pid}-${randomBytes(3).toString("hex")}`;
  const agent = `${NAME_PREFIX}-${id}-agent`;
  const upstream = `${NAME_PREFIX}-${id}-up`;
  const short = randomBytes(4).toString("hex");
  const vethA = `ala${short}`;
  const vethU = `alu${short}`;
  const created: string[] = [];
  const cleanup = () => {
    for (const ns of created.splice(0).reverse()) {
      runSync("ip", ["netns", "del", ns]);
      rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
    }
  };
  process.once("exit", cleanup);
  try {
    for (const ns of [agent, upstream]) {
      must("ip", ["netns", "add", ns]);
      created.push(ns);
      must("ip", ["-n", ns, "link", "set", "lo", "up"]);
      runSync("ip", ["netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"]);
    }
    must("ip", ["-n", agent, "link", "add", vethA, "type", "veth", "peer", "name", vethU, "netns", upstream]);
    must("ip", ["-n", agent, "addr", "add", "10.250.0.1/24", "dev", vethA]);
    must("ip", ["-n", agent, "addr", "add", "fd00:250::1/64", "dev", vethA, "nodad"]);
    must("ip", ["-n", upstream, "addr", "add", "10.250.0.2/24", "dev", vethU]);
    must("ip", ["-n", upstream, "addr", "add", "10.250.0.3/24", "dev", vethU]);
    must("ip", ["-n", upstream, "addr", "add", "fd00:250::2/64", "dev", vethU, "nodad"]);
    must("ip", ["-n", upstream, "addr", "add", "fd00:250::3/64", "dev", vethU, "nodad"]);
    must("ip", ["-n", agent, "link", "set", vethA, "up"]);
    must("ip", ["-n", upstream, "link", "set", vethU, "up"]);
  } catch (err) {
    cleanup();
    throw err;
  }
  return {
    agent,
    upstream,
    agentV4: "10.250.0.1",
    upstreamV4: "10.250.0.2",
    upstreamV4Excluded: "10.250.0.3",
    agentV6: "fd00:250::1",
    upstreamV6: "fd00:250::2",
    upstreamV6Excluded: "fd00:250::3",
    hosts(lines) {
      // `ip netns exec` bind-mounts /etc/netns/NAME/hosts over /etc/hosts for the command it runs.
      mkdirSync(`/etc/netns/${agent}`, { recursive: true });
      const text = Object.entries(lines)
        .flatMap(([name, addrs]) => addrs.map((a) => `${a} ${name}`))
        .join("\n");
      writeFileSync(`/etc/netns/${agent}/hosts`, `127.0.0.1 localhost\n::1 localhost\n${text}\n`);
    },
    exec: (ns, command, args, input) => run("ip", ["netns", "exec", ns, command, ...args], input),
    cleanup,
  };
}

export interface Service {
  child: ChildProcess;
  /** JSON lines the process printed so far. */
  lines: Record<string, unknown>[];
  stderr(): string;
  /** Resolves with the first line matching `pred` (already printed or still to come). */
  waitFor(
    pred: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** Starts a long-running Node script in a namespace; it prints JSON lines on stdout. `env` adds to this process's. */
export function startService(
  ns: string,
  script: string,
  arg: unknown,
  env: Record<string, string> = {},
): Service {
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, script, JSON.stringify(arg)], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  const lines: Record<string, unknown>[] = [];
  const waiters: {
    pred: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }[] = [];
  let err = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  if (child.stdout)
    createInterface({ input: child.stdout }).on("line", (text) => {
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(text) as Record<string, unknown>;
      } catch {
        return;
      }
      lines.push(line);
      for (const w of waiters.splice(0)) {
        if (w.pred(line)) w.resolve(line);
        else waiters.push(w);
      }
    });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child,
    lines,
    stderr: () => err,
    waitFor(pred, timeoutMs = 15_000) {
      const found = lines.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${script}: no matching line within ${timeoutMs} ms; stderr:\n${err}`)),
          timeoutMs,
        );
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
        void exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`${script} exited (${child.exitCode ?? child.signalCode}); stderr:\n${err}`));
        });
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null && child.pid) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 3_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}
