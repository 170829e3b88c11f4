// Latency at a fixed request rate, the way Istio publishes its data-plane latency: fortio (as a
// library, fixed-rate/main.go) holds the rate whatever the answers take, over a fixed number of
// connections, and reports percentiles with 10 µs resolution. Built from the Go module proxy into
// the cache on first use (and again when fixed-rate/ changes).
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const SRC = fileURLToPath(new URL("./fixed-rate/", import.meta.url));
const CACHE = process.env.AIRLOCK_CACHE_DIR ?? join(homedir(), ".cache", "airlock");

export interface FixedRateResult {
  /** Requests per second the generator achieved (it should be the rate asked for). */
  rps: number;
  requests: number;
  p50us: number;
  p90us: number;
  p99us: number;
  p999us: number;
  /** Answers other than 200, and failed requests. */
  errors: number;
}

let built: string | undefined;

/** The fixed-rate binary, built when missing (go build, a minute the first time). */
export function fixedRateBinary(log: (line: string) => void = () => {}): string {
  if (built) return built;
  const stamp = createHash("sha256")
    .update(readFileSync(join(SRC, "go.sum")))
    .update(readFileSync(join(SRC, "main.go")))
    .digest("hex")
    .slice(0, 16);
  const bin = join(CACHE, "bench", `fixed-rate-${stamp}`);
  if (!existsSync(bin)) {
    log(`  building the fixed-rate load generator (fortio, Go modules) into ${bin}`);
    mkdirSync(join(CACHE, "bench"), { recursive: true });
    execFileSync("go", ["build", "-trimpath", "-o", `${bin}.tmp`, "."], {
      cwd: SRC,
      env: { ...process.env, CGO_ENABLED: "0" },
      stdio: ["ignore", "ignore", "inherit"],
    });
    renameSync(`${bin}.tmp`, bin);
  }
  built = bin;
  return bin;
}

/** `qps` requests per second to `url` over `connections` connections for `seconds`. */
export async function atFixedRate(opts: {
  url: string;
  qps: number;
  connections: number;
  seconds: number;
  headers?: Record<string, string>;
  log?: (line: string) => void;
}): Promise<FixedRateResult> {
  const args = [
    "-url",
    opts.url,
    "-qps",
    String(opts.qps),
    "-c",
    String(opts.connections),
    "-t",
    `${opts.seconds}s`,
  ];
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push("-H", `${k}: ${v}`);
  const { stdout } = await promisify(execFile)(fixedRateBinary(opts.log), args, {
    timeout: (opts.seconds + 60) * 1000,
  });
  const r = JSON.parse(stdout) as {
    requests: number;
    actualQps: number;
    errors: number;
    p50us: number;
    p90us: number;
    p99us: number;
    p999us: number;
  };
  return {
    rps: r.actualQps,
    requests: r.requests,
    p50us: r.p50us,
    p90us: r.p90us,
    p99us: r.p99us,
    p999us: r.p999us,
    errors: r.errors,
  };
}
