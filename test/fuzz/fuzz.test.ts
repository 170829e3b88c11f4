// The bounded fuzzing run of the test suite: every target of test/fuzz/ for a few seconds from
// its corpus (test/fuzz/corpus/<target>/), three at a time. A crash,
// a broken invariant, a hang or memory past the limit fails the target's test with the input
// left in .airlock/fuzz/<target>/. The longer run is `npm run fuzz -- --minutes N`.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ensureFuzzer, fuzzTarget, TARGETS } from "./run.ts";

const SECONDS = Number(process.env.AIRLOCK_FUZZ_SECONDS ?? 8);

// The addon is built on first use (~1 min). Without libFuzzer installed the suite is skipped,
// saying so; any other build failure fails it.
let unavailable: string | undefined;
try {
  ensureFuzzer();
} catch (err) {
  const message = (err as Error).message;
  if (!/libFuzzer .*not found/.test(message)) throw err;
  unavailable = message;
  console.warn(`fuzz tests skipped: ${message} (.ci/run installs libclang-rt-16-dev)`);
}

describe.skipIf(unavailable !== undefined)("fuzzing harness", () => {
  it("reports a planted finding as a failure and keeps its input", async () => {
    const r = await fuzzTarget(join(import.meta.dirname, "support", "planted.fuzz.ts"), {
      seconds: 30,
      // Its guard is in the target itself: instrument it, so comparisons guide the search.
      includes: ["test/fuzz/support/planted"],
      quiet: true,
    });
    expect(r.ok).toBe(false);
    expect(r.finding).toMatch(/InvariantError: planted/);
    expect(r.artifact && existsSync(r.artifact)).toBe(true);
    expect(
      readFileSync(r.artifact as string)
        .subarray(0, 3)
        .toString("latin1"),
    ).toBe("FZ!");
  }, 60_000);
});

// Three targets at a time: most of a run is Node starting and instrumenting the sources, and
// replaying the corpus (the http-request target waits on sockets), so the file stays near 2 min.
const PARALLEL = 3;
let running = 0;
const waiting: (() => void)[] = [];
async function inSlot<T>(fn: () => Promise<T>): Promise<T> {
  while (running >= PARALLEL) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

describe.skipIf(unavailable !== undefined).concurrent("fuzz targets", () => {
  it.each(TARGETS)(
    `%s runs ${SECONDS} s from its corpus without a finding`,
    async (target) => {
      const r = await inSlot(() => fuzzTarget(target, { seconds: SECONDS, quiet: true }));
      console.log(
        `${target}: ${r.execs} executions, ${r.edges} edges, ${r.features} features, corpus ${r.corpus}, ${r.seconds} s${r.ok ? "" : `; ${r.finding}`}`,
      );
      expect(r.finding ?? "", r.artifact).toBe("");
      expect(r.ok).toBe(true);
      // Instrumentation reached the modules under test (not only the target's own file).
      expect(r.edges).toBeGreaterThan(100);
      expect(r.execs).toBeGreaterThan(50);
    },
    // Queued behind the others: the whole file's bound.
    (SECONDS + 60) * TARGETS.length * 1000,
  );
});
