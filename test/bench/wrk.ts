// Load generation with wrk (Debian package; C, so the load generator takes less of the 2 cores
// than a Node one would). Returns latency percentiles and throughput parsed from --latency output.
import { execFile } from "node:child_process";

export interface LoadResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

const toMs = (v: string, unit: string) =>
  Number(v) * ({ us: 0.001, ms: 1, s: 1000 } as Record<string, number>)[unit]!;

export function parseWrk(out: string): LoadResult {
  const pct = (p: string) => {
    const m = new RegExp(`^\\s*${p}%\\s+([0-9.]+)(us|ms|s)\\s*$`, "m").exec(out);
    if (!m) throw new Error(`wrk output has no ${p}% line:\n${out}`);
    return toMs(m[1] as string, m[2] as string);
  };
  const rps = /Requests\/sec:\s+([0-9.]+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors =
    Number(non2xx?.[1] ?? 0) + (sockErr ? sockErr.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  return { rps: Number(rps?.[1] ?? 0), p50ms: pct("50"), p99ms: pct("99"), errors };
}

export function wrk(
  url: string,
  opts: { seconds: number; connections: number; threads?: number; headers?: Record<string, string> },
) {
  const args = [
    "--latency",
    "-d",
    `${opts.seconds}s`,
    "-c",
    String(opts.connections),
    "-t",
    String(opts.threads ?? 1),
  ];
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push("-H", `${k}: ${v}`);
  args.push(url);
  return new Promise<LoadResult>((resolve, reject) => {
    execFile("wrk", args, { timeout: (opts.seconds + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
      try {
        resolve(parseWrk(stdout));
      } catch (e) {
        reject(e);
      }
    });
  });
}
