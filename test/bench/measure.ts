// How a bench row is measured: a short warm-up, then the load, and the CPU a process spent per
// request meanwhile, from /proc (Linux) — steadier than req/s on a shared machine, where the load
// generator, the upstream and other work compete for the same cores.
import { readFileSync } from "node:fs";

/** User + system CPU seconds a process used so far (clock ticks of /proc/PID/stat fields 14 and 15). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11] ?? 0) + Number(f[12] ?? 0)) / 100;
}

/** CPU seconds of a process and its children (nginx's master and worker). */
export function processTreeCpu(pid: number): number {
  let total = cpuSeconds(pid);
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    for (const c of children) total += cpuSeconds(Number(c));
  } catch {
    // no children file: the process alone
  }
  return total;
}

/**
 * One row: `run` for 1 s (warm-up: JIT, caches, upstream pools), then for `seconds`; with `cpu`
 * (a process's CPU seconds so far), the CPU it spent per request of the measured run, in µs.
 */
export async function measureRow<R>(opts: {
  seconds: number;
  run: (seconds: number) => Promise<R>;
  requests: (result: R) => number;
  cpu?: () => number;
}): Promise<{ result: R; cpuUsPerRequest?: number }> {
  await opts.run(1);
  const cpuBefore = opts.cpu?.() ?? 0;
  const result = await opts.run(opts.seconds);
  const requests = opts.requests(result);
  return opts.cpu && requests > 0
    ? { result, cpuUsPerRequest: ((opts.cpu() - cpuBefore) * 1e6) / requests }
    : { result };
}
