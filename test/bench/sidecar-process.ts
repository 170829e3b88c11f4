// The sidecar as the image runs it, for the bench and the soak: the Dockerfile's NODE_OPTIONS
// (read from the Dockerfile, so the two cannot drift apart) and Node's compile cache filled the
// way the image build fills it (bin/warm-compile-cache.mjs). AIRLOCK_BENCH_FROM_SOURCE=1 runs
// it as from a checkout instead (no flags, no cache: Node strips the types itself), and
// AIRLOCK_BENCH_NODE_FLAGS="..." replaces the Dockerfile's flags, to compare V8 settings.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const root = fileURLToPath(new URL("../../", import.meta.url));
const CACHE_DIR = join(root, ".airlock", "compile-cache");

/** The flags of the Dockerfile's `ENV NODE_OPTIONS=...` (quoted or a single word). */
export function imageNodeOptions(): string[] {
  const m = /^(?:ENV\s+|\s+)NODE_OPTIONS=(?:"([^"]*)"|(\S+))/m.exec(
    readFileSync(join(root, "Dockerfile"), "utf8"),
  );
  if (!m) throw new Error("the Dockerfile sets no NODE_OPTIONS");
  return (m[1] ?? m[2] ?? "").split(/\s+/).filter(Boolean);
}

export interface SidecarLaunch {
  /** Node flags before the script. */
  execArgv: string[];
  /** Environment additions. */
  env: Record<string, string>;
  /** How it runs, for the report. */
  label: string;
}

let warmed: Promise<SidecarLaunch> | undefined;

/** How to start the sidecar process; the first call fills the compile cache (a few seconds). */
export function sidecarLaunch(): Promise<SidecarLaunch> {
  if (process.env.AIRLOCK_BENCH_FROM_SOURCE === "1")
    return Promise.resolve({
      execArgv: [],
      env: { NODE_DISABLE_COMPILE_CACHE: "1", NODE_OPTIONS: "" },
      label: "without the image's settings (Node strips the types, default heap)",
    });
  warmed ??= (async () => {
    const override = process.env.AIRLOCK_BENCH_NODE_FLAGS;
    const execArgv = override === undefined ? imageNodeOptions() : override.split(/\s+/).filter(Boolean);
    await promisify(execFile)(
      process.execPath,
      [...execArgv, join(root, "bin", "warm-compile-cache.mjs"), CACHE_DIR],
      { cwd: root, env: { ...process.env, NODE_OPTIONS: "" }, timeout: 120_000 },
    );
    return {
      execArgv,
      env: { NODE_COMPILE_CACHE: CACHE_DIR, NODE_OPTIONS: "" },
      label: `${override === undefined ? "as in the image" : "with AIRLOCK_BENCH_NODE_FLAGS"} (${execArgv.join(" ") || "no flags"}, compile cache warm)`,
    };
  })();
  return warmed;
}

/**
 * `airlock sidecar` from the checkout on `<dir>/policy.yaml` and `<dir>/secrets` (its hash key in
 * `dir`), logging warnings only (stderr inherited, stdout ignored unless a file descriptor is
 * given), run as `launch` says (default: plain node, no flags), with `env` added.
 */
export function spawnSidecar(
  dir: string,
  opts: {
    adminPort: number;
    proxyPort?: number;
    launch?: SidecarLaunch;
    env?: Record<string, string>;
    stdout?: number;
  },
): ChildProcess {
  return spawn(
    process.execPath,
    [
      ...(opts.launch?.execArgv ?? []),
      "bin/airlock.js",
      "sidecar",
      "--policy",
      join(dir, "policy.yaml"),
      "--secrets",
      join(dir, "secrets"),
      "--admin-port",
      String(opts.adminPort),
      "--proxy-port",
      String(opts.proxyPort ?? 0),
      "--hash-key-file",
      join(dir, "hash.key"),
      "--log-level",
      "warn",
    ],
    {
      cwd: root,
      stdio: ["ignore", opts.stdout ?? "ignore", "inherit"],
      env: { ...process.env, ...opts.launch?.env, ...opts.env },
    },
  );
}

/** Resident memory of a process, from /proc (Linux): all of it, and its private (anonymous) part. */
export function processMemory(pid: number): { rssMb: number; anonMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) / 1024;
  return { rssMb: kb("VmRSS"), anonMb: kb("RssAnon") };
}
