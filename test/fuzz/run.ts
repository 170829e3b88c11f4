// Runs the coverage-guided fuzz targets (test/fuzz/<target>.fuzz.ts) with Jazzer.js, one at a
// time, and prints per target: executions, coverage (libFuzzer's cov = edges, ft = features),
// corpus size, and the finding if any. Exit status 1 when any target found a crash, a broken
// invariant, a hang (a single input over --timeout) or memory past the RSS limit.
//
//   npm run fuzz -- --minutes N [--target T]...   the longer run (N minutes per target)
//   node test/fuzz/run.ts --seconds 20            the bounded run the test suite does
//
// The repository's corpus (test/fuzz/corpus/<target>/) is read, never written: new inputs go to
// a scratch corpus; --keep-corpus DIR keeps them there (e.g. to merge interesting ones by hand).
// Findings are written to .airlock/fuzz/<target>/ (crash-*, timeout-*, oom-*).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");

export const TARGETS = readdirSync(here)
  .filter((f) => f.endsWith(".fuzz.ts"))
  .map((f) => f.slice(0, -".fuzz.ts".length))
  .sort();

export interface TargetResult {
  target: string;
  ok: boolean;
  execs: number;
  /** libFuzzer's cov: covered edges (Jazzer.js counters). */
  edges: number;
  /** libFuzzer's ft: features (edges with hit-count buckets, value profile). */
  features: number;
  corpus: number;
  seconds: number;
  finding?: string;
  artifact?: string;
}

export interface RunOptions {
  seconds: number;
  /** Per-input limit, seconds: longer is a hang. */
  timeout?: number;
  rssLimitMb?: number;
  corpusDir?: string;
  quiet?: boolean;
}

const prebuilt = join(
  root,
  "node_modules",
  "@jazzer.js",
  "fuzzer",
  "prebuilds",
  `fuzzer-${process.platform}-${process.arch}.node`,
);
const localAddon = join(here, "native", "build", "Release", "jazzer_fuzzer.node");

/**
 * Makes sure a fuzzer addon loads: the prebuilt one, else the local build (test/fuzz/native),
 * built here on first use. Throws with what to install when neither can be had.
 */
export function ensureFuzzer(): void {
  try {
    process.dlopen({ exports: {} }, prebuilt);
    return;
  } catch {
    // Needs a newer glibc/libstdc++ than this system has: build against the system's libFuzzer.
  }
  if (existsSync(localAddon)) return;
  const r = spawnSync("bash", [join(here, "native", "build.sh")], { stdio: ["ignore", "inherit", "pipe"] });
  if (r.status !== 0) throw new Error(`cannot build the fuzzer addon: ${r.stderr?.toString("utf8").trim()}`);
}

/**
 * Fuzzes one target (a name under test/fuzz/, or a path to a .fuzz.ts file) for `seconds`;
 * resolves with libFuzzer's figures.
 */
export function fuzzTarget(target: string, opts: RunOptions): Promise<TargetResult> {
  const file = target.endsWith(".fuzz.ts") ? resolve(target) : join(here, `${target}.fuzz.ts`);
  if (target.endsWith(".fuzz.ts")) target = target.replace(/^.*\//, "").slice(0, -".fuzz.ts".length);
  const artifacts = join(root, ".airlock", "fuzz", target);
  mkdirSync(artifacts, { recursive: true });
  const scratch = opts.corpusDir ?? mkdtempSync(join(tmpdir(), `airlock-fuzz-${target}-`));
  mkdirSync(scratch, { recursive: true });
  const seeds = join(here, "corpus", target);
  const corpora = [scratch, ...(existsSync(seeds) ? [seeds] : [])];
  const cli = join(root, "node_modules", "@jazzer.js", "core", "dist", "cli.js");
  // Targets that drive sockets are async (their fuzz function returns a promise).
  const sync = !/export async function fuzz|export function fuzz\([^)]*\): Promise/.test(
    readFileSync(file, "utf8"),
  );
  const args = [
    cli,
    join(here, "support", "entry.mjs"),
    ...corpora,
    ...(sync ? ["--sync"] : []),
    "--includes",
    "sidecar/src",
    "--includes",
    "injector/src",
    "--includes",
    "api/",
    // The SSRF detector reports every outbound TCP connection; the socket targets connect only to
    // the loopback servers they start themselves.
    "--disable_bug_detectors",
    "ssrf",
    "--timeout",
    String((opts.timeout ?? 10) * 1000),
    "--",
    `-max_total_time=${opts.seconds}`,
    `-rss_limit_mb=${opts.rssLimitMb ?? 2048}`,
    `-artifact_prefix=${artifacts}/`,
    "-print_final_stats=1",
    "-max_len=8192",
  ];
  const started = Date.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: {
        ...process.env,
        AIRLOCK_FUZZ_TARGET: file,
        // NODE_OPTIONS, not argv: libFuzzer's merge/fork modes start the CLI again.
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --import ${join(here, "support", "preload.mjs")} --max-old-space-size=1536`,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let log = "";
    const onData = (b: Buffer) => {
      const s = b.toString("utf8");
      log += s;
      if (log.length > 4_000_000) log = log.slice(-2_000_000);
      if (!opts.quiet) process.stderr.write(s);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const stats = [...log.matchAll(/^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/gm)].at(-1);
      const runs = log.match(/^stat::number_of_executed_units: (\d+)/m) ?? log.match(/^Done (\d+) runs/m);
      const artifact = log.match(/Test unit written to (\S+)/)?.[1];
      const ok = code === 0 && !signal && !artifact;
      const finding = ok
        ? undefined
        : (log.match(/^==\d+== (.+)$/m)?.[1] ??
          log.match(/^(ALARM: .+|==\d+== ERROR: libFuzzer: .+|.*out of memory.*)$/m)?.[1] ??
          `exit ${code ?? signal}: ${log.slice(-2000)}`);
      resolvePromise({
        target,
        ok,
        execs: Number(runs?.[1] ?? stats?.[1] ?? 0),
        edges: Number(stats?.[2] ?? 0),
        features: Number(stats?.[3] ?? 0),
        corpus: Number(stats?.[4] ?? 0),
        seconds: Math.round((Date.now() - started) / 1000),
        ...(finding ? { finding } : {}),
        ...(artifact ? { artifact } : {}),
      });
    });
  });
}

const HELP = `Usage: npm run fuzz -- [--minutes N | --seconds N] [--target T]... [--keep-corpus DIR]

Fuzzes each selected target for N minutes (default 5), one after another, with Jazzer.js.
Targets: ${TARGETS.join(", ")}
  --minutes N       time per target, minutes
  --seconds N       time per target, seconds
  --target T        only this target (repeatable; default: all)
  --timeout S       a single input running longer than S seconds is a hang (default 10)
  --keep-corpus DIR write new corpus inputs under DIR/<target>/ (default: a scratch directory)
  --help            this text
Exit status 1 when a target finds anything; the input is in .airlock/fuzz/<target>/.
Replay one input: AIRLOCK_FUZZ_TARGET=test/fuzz/T.fuzz.ts NODE_OPTIONS=--import=./test/fuzz/support/preload.mjs \\
  npx jazzer test/fuzz/support/entry.mjs --sync -- <file>`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      minutes: { type: "string" },
      seconds: { type: "string" },
      target: { type: "string", multiple: true },
      timeout: { type: "string" },
      "keep-corpus": { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const seconds = values.seconds ? Number(values.seconds) : Number(values.minutes ?? 5) * 60;
  const targets = values.target ?? TARGETS;
  const unknown = targets.filter((t) => !TARGETS.includes(t));
  if (unknown.length > 0 || !(seconds > 0)) {
    console.error(unknown.length > 0 ? `unknown target(s): ${unknown.join(", ")}` : "time must be > 0");
    console.error(HELP);
    return 2;
  }
  ensureFuzzer();
  const results: TargetResult[] = [];
  for (const target of targets) {
    const keep = values["keep-corpus"];
    results.push(
      await fuzzTarget(target, {
        seconds,
        ...(values.timeout ? { timeout: Number(values.timeout) } : {}),
        ...(keep ? { corpusDir: join(resolve(keep), target) } : {}),
      }),
    );
  }
  console.log("\ntarget               seconds      execs   edges  features  corpus  result");
  for (const r of results)
    console.log(
      `${r.target.padEnd(20)} ${String(r.seconds).padStart(7)} ${String(r.execs).padStart(10)} ${String(r.edges).padStart(7)} ${String(r.features).padStart(9)} ${String(r.corpus).padStart(7)}  ${r.ok ? "ok" : `FINDING ${r.artifact ?? ""}: ${r.finding}`}`,
    );
  return results.every((r) => r.ok) ? 0 : 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url))
  process.exitCode = await main();
