// Runs the coverage-guided fuzz targets (test/fuzz/<target>.fuzz.ts) with Jazzer.js, one at a
// time, and prints per target: executions, coverage (libFuzzer's cov = edges, ft = features),
// corpus size, and the finding if any. Exit status 1 when any target found a crash, a broken
// invariant, a hang (a single input over --timeout) or memory past the RSS limit.
//
//   npm run fuzz -- --minutes N [--target T]...   the longer run (N minutes per target)
//   npm run fuzz -- --merge --keep-corpus DIR     fold DIR's inputs into the repository's corpus
//
// A fuzzing run reads the repository's corpus (test/fuzz/corpus/<target>/), never writes it: new
// inputs go to a scratch corpus, or to --keep-corpus DIR; --merge minimises them into it.
// Findings are written to .airlock/fuzz/<target>/ (crash-*, timeout-*, oom-*).
import { spawn, spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
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
  /** More path patterns to instrument besides the sidecar, injector and API sources. */
  includes?: string[];
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

/** libFuzzer's -dict file for `target` from test/fuzz/dict/<target>.ts (its `words`), if any. */
async function writeDictionary(target: string): Promise<string | undefined> {
  const source = join(here, "dict", `${target}.ts`);
  if (!existsSync(source)) return undefined;
  const { words } = (await import(pathToFileURL(source).href)) as { words: string[] };
  // libFuzzer's escapes are \\, \" and \xNN only.
  const quote = (w: string) =>
    `"${[...Buffer.from(w, "utf8")].map((b) => (b >= 0x20 && b < 0x7f && b !== 0x22 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`)).join("")}"`;
  const file = join(mkdtempSync(join(tmpdir(), `airlock-fuzz-dict-`)), `${target}.dict`);
  writeFileSync(file, `${words.map(quote).join("\n")}\n`);
  return file;
}

/** The Jazzer.js command line for the target file `file` over `corpora`, then libFuzzer `flags`. */
function jazzerArgs(
  file: string,
  corpora: string[],
  opts: Omit<RunOptions, "seconds">,
  flags: string[],
): string[] {
  const target = file.replace(/^.*\//, "").slice(0, -".fuzz.ts".length);
  const artifacts = join(root, ".airlock", "fuzz", target);
  mkdirSync(artifacts, { recursive: true });
  // Targets that drive sockets are async (their fuzz function returns a promise).
  const sync = !/export async function fuzz|export function fuzz\([^)]*\): Promise/.test(
    readFileSync(file, "utf8"),
  );
  return [
    join(root, "node_modules", "@jazzer.js", "core", "dist", "cli.js"),
    join(here, "support", "entry.mjs"),
    ...corpora,
    ...(sync ? ["--sync"] : []),
    "--includes",
    "sidecar/src",
    "--includes",
    "injector/src",
    "--includes",
    "api/",
    ...(opts.includes ?? []).flatMap((p) => ["--includes", p]),
    // The SSRF detector reports every outbound TCP connection; the socket targets connect only to
    // the loopback servers they start themselves.
    "--disable_bug_detectors",
    "ssrf",
    "--timeout",
    String((opts.timeout ?? 10) * 1000),
    "--",
    `-rss_limit_mb=${opts.rssLimitMb ?? 2048}`,
    `-artifact_prefix=${artifacts}/`,
    "-max_len=8192",
    ...flags,
  ];
}

/**
 * Fuzzes one target (a name under test/fuzz/, or a path to a .fuzz.ts file) for `seconds`;
 * resolves with libFuzzer's figures.
 */
export async function fuzzTarget(target: string, opts: RunOptions): Promise<TargetResult> {
  const file = target.endsWith(".fuzz.ts") ? resolve(target) : join(here, `${target}.fuzz.ts`);
  if (target.endsWith(".fuzz.ts")) target = target.replace(/^.*\//, "").slice(0, -".fuzz.ts".length);
  const scratch = opts.corpusDir ?? mkdtempSync(join(tmpdir(), `airlock-fuzz-${target}-`));
  mkdirSync(scratch, { recursive: true });
  const seeds = join(here, "corpus", target);
  const args = jazzerArgs(file, [scratch, ...(existsSync(seeds) ? [seeds] : [])], opts, [
    `-max_total_time=${opts.seconds}`,
    "-print_final_stats=1",
  ]);
  const dict = await writeDictionary(target);
  if (dict) args.push(`-dict=${dict}`);
  const started = Date.now();
  const { code, signal, log } = await runJazzer(file, args, opts.quiet ?? false);
  const stats = [...log.matchAll(/^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/gm)].at(-1);
  const runs = log.match(/^stat::number_of_executed_units: (\d+)/m) ?? log.match(/^Done (\d+) runs/m);
  // libFuzzer also writes slow-unit-* (an input over 10 s, e.g. when the niced process was
  // descheduled): not a finding by itself; a hang is an input over --timeout.
  const artifact = [...log.matchAll(/Test unit written to (\S+)/g)]
    .map((m) => m[1] as string)
    .find((a) => !/\/slow-unit-[^/]*$/.test(a));
  const ok = code === 0 && !signal && !artifact;
  const finding = ok
    ? undefined
    : (log.match(/^==\d+== (.+)$/m)?.[1] ??
      log.match(/^(ALARM: .+|==\d+== ERROR: libFuzzer: .+|.*out of memory.*)$/m)?.[1] ??
      `exit ${code ?? signal}: ${log.slice(-2000)}`);
  return {
    target,
    ok,
    execs: Number(runs?.[1] ?? stats?.[1] ?? 0),
    edges: Number(stats?.[2] ?? 0),
    features: Number(stats?.[3] ?? 0),
    corpus: Number(stats?.[4] ?? 0),
    seconds: Math.round((Date.now() - started) / 1000),
    ...(finding ? { finding } : {}),
    ...(artifact ? { artifact } : {}),
  };
}

function runJazzer(
  file: string,
  args: string[],
  quiet: boolean,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; log: string }> {
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
      if (!quiet) process.stderr.write(s);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", reject);
    child.on("close", (code, signal) => resolvePromise({ code, signal, log }));
  });
}

/**
 * Minimises the repository's corpus of `target` with libFuzzer's -merge=1: keeps its finding-*
 * (regressions) and seed-* (from the suites, readable) inputs, then only the inputs of the corpus
 * and of `extra` (e.g. a --keep-corpus directory) that add coverage, and replaces
 * test/fuzz/corpus/<target>/ with them.
 */
export async function mergeCorpus(
  target: string,
  extra: string[],
  opts: { quiet?: boolean; timeout?: number } = {},
): Promise<{ before: CorpusSize; after: CorpusSize }> {
  const file = join(here, `${target}.fuzz.ts`);
  const repo = join(here, "corpus", target);
  mkdirSync(repo, { recursive: true });
  const before = corpusSize(repo);
  const out = mkdtempSync(join(tmpdir(), `airlock-fuzz-merge-${target}-`));
  for (const f of readdirSync(repo).filter(kept)) copyFileSync(join(repo, f), join(out, f));
  const args = jazzerArgs(file, [out, repo, ...extra.filter((d) => existsSync(d))], opts, ["-merge=1"]);
  const { code, log } = await runJazzer(file, args, opts.quiet ?? false);
  if (code !== 0) throw new Error(`merge of ${target} failed (exit ${code}): ${log.slice(-2000)}`);
  for (const f of readdirSync(repo)) rmSync(join(repo, f));
  for (const f of readdirSync(out)) copyFileSync(join(out, f), join(repo, f));
  rmSync(out, { recursive: true });
  return { before, after: corpusSize(repo) };
}

const kept = (f: string) => f.startsWith("finding-") || f.startsWith("seed-");

interface CorpusSize {
  files: number;
  bytes: number;
}

function corpusSize(dir: string): CorpusSize {
  const files = readdirSync(dir);
  return { files: files.length, bytes: files.reduce((n, f) => n + statSync(join(dir, f)).size, 0) };
}

const HELP = `Usage: npm run fuzz -- [--minutes N | --seconds N] [--target T]... [--keep-corpus DIR] [--merge]

Fuzzes each selected target for N minutes (default 5), one after another, with Jazzer.js.
Targets: ${TARGETS.join(", ")}
  --minutes N       time per target, minutes
  --seconds N       time per target, seconds
  --target T        only this target (repeatable; default: all)
  --timeout S       a single input running longer than S seconds is a hang (default 10)
  --keep-corpus DIR write new corpus inputs under DIR/<target>/ (default: a scratch directory)
  --merge           instead of fuzzing: minimise test/fuzz/corpus/<target>/ with libFuzzer's
                    -merge=1 over it and --keep-corpus DIR/<target>/ (finding-*, seed-* are kept)
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
      merge: { type: "boolean" },
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
  if (values.merge) {
    const keep = values["keep-corpus"];
    for (const target of targets) {
      const { before, after } = await mergeCorpus(target, keep ? [join(resolve(keep), target)] : [], {
        quiet: true,
      });
      console.log(
        `${target}: corpus ${before.files} files, ${before.bytes} bytes -> ${after.files} files, ${after.bytes} bytes`,
      );
    }
    return 0;
  }
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
