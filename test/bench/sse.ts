// SSE rows of `npm run bench`: time to first text of an Anthropic-style answer (the 1.4k-character
// paragraph of test/fixtures/anthropic-stream.ts as 272 deltas, one every 7.5 ms, about the pace
// of a real answer) read directly from the upstream, through the guard, and through the guard
// with every masking detector on. Guard, upstream and client share this process.
//
// Run alone: `node test/bench/sse.ts [--rounds 5] [--interval-ms 7.5]`.
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { AgentAccessPolicySpec, MaskingRule } from "../../api/src/index.ts";
import {
  deltaEvent,
  deltasOf,
  PARAGRAPH,
  readTextDeltas,
  STREAM_HEAD,
  STREAM_TAIL,
} from "../fixtures/anthropic-stream.ts";
import { policy, sleep, startSidecar, startUpstream } from "../http/harness.ts";

export interface SseBenchRow {
  path: string;
  /** Medians over the rounds, milliseconds from the request to the first non-empty text delta. */
  ttftMs: number;
  /** Request to the last text delta. */
  totalMs: number;
  /** Text deltas the client received (the upstream sends 272). */
  deltas: number;
}

export interface SseBench {
  rows: SseBenchRow[];
  rounds: number;
  intervalMs: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

export async function benchSse(opts: { rounds?: number; intervalMs?: number } = {}): Promise<SseBench> {
  const rounds = opts.rounds ?? 5;
  const intervalMs = opts.intervalMs ?? 7.5;
  const deltas = deltasOf(PARAGRAPH);
  const upstream = await startUpstream(async (_req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
    res.write(STREAM_HEAD);
    const start = performance.now();
    for (const [k, text] of deltas.entries()) {
      const due = start + k * intervalMs - performance.now();
      if (due > 0) await sleep(due);
      res.write(deltaEvent(text));
    }
    res.end(STREAM_TAIL);
  });
  const spec = (masking: MaskingRule[]): AgentAccessPolicySpec => ({
    connections: [
      {
        name: "llm",
        protocol: "http",
        target: { host: "127.0.0.1", port: upstream.port },
        tls: { mode: "disable" },
      },
    ],
    rules: [{ name: "all", action: "allow", match: { http: { paths: ["/**"] } } }],
    masking,
  });
  const plain = await startSidecar({ policies: [policy("llm", spec([]))] });
  const masked = await startSidecar({
    policies: [policy("llm", spec([{ name: "everything", detectors: ["all"], strategy: "redact" }]))],
  });
  const paths: [string, string][] = [
    ["direct", upstream.url],
    ["sidecar", await plain.listen("llm")],
    ["sidecar + masking (all detectors)", await masked.listen("llm")],
  ];
  const samples = new Map<string, { ttft: number[]; total: number[]; deltas: number[] }>();
  try {
    // Paths take turns going first: the first request of a round pays for waking everything up.
    for (let r = 0; r < rounds; r++)
      for (const [name, base] of [...paths.slice(r % paths.length), ...paths.slice(0, r % paths.length)]) {
        const t0 = performance.now();
        let first = Number.NaN;
        let last = Number.NaN;
        const res = await fetch(`${base}/v1/messages`, { method: "POST", body: "{}" });
        const n = await readTextDeltas(res.body as ReadableStream<Uint8Array>, (text) => {
          if (text === "") return;
          last = performance.now() - t0;
          if (Number.isNaN(first)) first = last;
        });
        const s = samples.get(name) ?? { ttft: [], total: [], deltas: [] };
        s.ttft.push(first);
        s.total.push(last);
        s.deltas.push(n);
        samples.set(name, s);
      }
  } finally {
    await masked.close();
    await plain.close();
    await upstream.close();
  }
  const rows = paths.map(([name]) => {
    const s = samples.get(name) ?? { ttft: [], total: [], deltas: [] };
    return { path: name, ttftMs: median(s.ttft), totalMs: median(s.total), deltas: median(s.deltas) };
  });
  return { rows, rounds, intervalMs };
}

export function formatSseBench(b: SseBench): string {
  const direct = b.rows[0];
  const out = [
    `SSE: ${PARAGRAPH.length}-character answer as 272 text deltas, one every ${b.intervalMs} ms (median of ${b.rounds})`,
    "| path | time to first text ms | added ms | last text ms | text deltas received |",
    "|---|---|---|---|---|",
  ];
  for (const r of b.rows)
    out.push(
      `| ${r.path} | ${r.ttftMs.toFixed(1)} | ${direct ? (r.ttftMs - direct.ttftMs).toFixed(1) : ""} | ${r.totalMs.toFixed(0)} | ${r.deltas} |`,
    );
  return out.join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { rounds: { type: "string", default: "5" }, "interval-ms": { type: "string", default: "7.5" } },
  });
  const b = await benchSse({ rounds: Number(values.rounds), intervalMs: Number(values["interval-ms"]) });
  process.stdout.write(`${formatSseBench(b)}\n`);
  process.exit(0);
}
