// `npm run soak -- [--minutes 10] [--rate 100] [--window 15]`: a fixed-rate soak of one sidecar
// process (HTTP and PostgreSQL, masking and audit on), not part of `npm test`. Prints the
// per-window table and a verdict (exit 1 when it fails) and keeps the figures in
// .airlock/soak/last.json, which `npm run bench` prints with its own short soak.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { runSoak } from "./soak.ts";
import { formatSoak, verdict } from "./verdict.ts";

export const LAST_SOAK = join(
  fileURLToPath(new URL("../../", import.meta.url)),
  ".airlock",
  "soak",
  "last.json",
);

const HELP = `Usage: npm run soak -- [--minutes 10] [--rate 100] [--window 15] [--warmup 10]

Drives one real sidecar process at a fixed rate (open loop: latency from the scheduled time)
through HTTP (the bench's upstream, JSON masking) and PostgreSQL (real server, column masking),
audit counted from the sidecar's stdout (a file, as a container runtime keeps it). Samples RSS, V8 heap, open fds, event-loop delay, CPU and
per-window latency/errors; prints a table and a verdict (RSS and fds flat, p99 stable, no errors,
audit events = operations). Exit status 1 when the verdict fails.

  --minutes N   measured duration (default 10)
  --rate N      operations per second for each of HTTP and PostgreSQL (default 100)
  --window N    seconds per sample window, 10-30 (default 15)
  --warmup N    seconds of load before the first window (default 10)
`;

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      minutes: { type: "string", default: "10" },
      rate: { type: "string", default: "100" },
      window: { type: "string", default: "15" },
      warmup: { type: "string", default: "10" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const num = (flag: string, v: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) {
      process.stderr.write(`--${flag} must be a number from ${min} to ${max}, got ${v}\n${HELP}`);
      process.exit(2);
    }
    return n;
  };
  // Ctrl-C or SIGTERM: stop at the next window, then stop the sidecar and PostgreSQL as usual.
  const stop = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM"] as const)
    process.once(sig, () => {
      process.stderr.write(`  soak: ${sig}, stopping after this window\n`);
      stop.abort();
    });
  const result = await runSoak({
    signal: stop.signal,
    minutes: num("minutes", values.minutes, 0.1, 24 * 60),
    rate: num("rate", values.rate, 1, 20_000),
    windowSeconds: num("window", values.window, 1, 300),
    warmupSeconds: num("warmup", values.warmup, 0, 600),
    log: (s) => process.stderr.write(`${s}\n`),
  });
  mkdirSync(join(LAST_SOAK, ".."), { recursive: true });
  writeFileSync(LAST_SOAK, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${formatSoak(result)}\n`);
  process.exit(verdict(result).every((c) => c.ok) ? 0 : 1);
}
