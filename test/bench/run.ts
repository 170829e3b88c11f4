// `npm run bench`: side-by-side baselines, one run, ratios first. Numbers on a shared 2-core
// machine are noisy; the ratios against a baseline measured in the same run are what to read.
import { parseArgs } from "node:util";
import { benchHttp } from "./http.ts";
import { stealLine, stealMeter } from "./steal.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    connections: { type: "string", default: "16" },
    only: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  process.stdout.write(
    "Usage: npm run bench [-- --seconds 8 --connections 16 --only http|https|postgres|sse|admission]\n",
  );
  process.exit(0);
}
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const log = (s: string) => process.stderr.write(`${s}\n`);
const want = (section: string) => !values.only || values.only === section;
const fmt = (n: number, d = 2) => n.toFixed(d);
const out: string[] = [];
const steal = stealMeter();

if (want("http")) {
  log("HTTP: wrk against direct, nginx, sidecar, sidecar+masking");
  const h = await benchHttp({ seconds, connections, log });
  const base = h.rows[0]?.result;
  if (!base) throw new Error("no baseline row");
  out.push(
    "",
    `HTTP GET ~1 KB JSON, wrk ${connections} connections × ${seconds}s each (sidecar RSS after load: ${fmt(h.sidecarRssMb, 0)} MB)`,
  );
  out.push(
    "| path | req/s | × direct | p50 ms | p99 ms | added p50 ms | added p99 ms | errors |",
    "|---|---|---|---|---|---|---|---|",
  );
  for (const { name, result: r } of h.rows) {
    out.push(
      `| ${name} | ${fmt(r.rps, 0)} | ${fmt(r.rps / base.rps)} | ${fmt(r.p50ms)} | ${fmt(r.p99ms)} | ${fmt(r.p50ms - base.p50ms)} | ${fmt(r.p99ms - base.p99ms)} | ${r.errors} |`,
    );
  }
  out.push(
    "",
    `Sidecar CPU per request (user+sys, steadier than req/s on a shared machine): ${h.rows
      .filter((row) => row.sidecarCpuUsPerRequest !== undefined)
      .map((row) => `${row.name} ${fmt(row.sidecarCpuUsPerRequest ?? 0, 0)} µs`)
      .join(", ")}`,
    `Sidecar memory (RSS / V8 heap used): ${h.sidecarMemory
      .map((m) => `${m.when} ${fmt(m.rssMb, 0)} / ${fmt(m.heapUsedMb, 0)} MB`)
      .join(", ")}`,
  );
}

if (want("https")) {
  log("HTTPS: direct, nginx terminating TLS, the sidecar intercepting (keep-alive and fresh handshakes)");
  const { benchHttps, formatHttpsBench } = await import("./https.ts");
  out.push("", formatHttpsBench(await benchHttps({ seconds, connections, log }), { seconds, connections }));
}

if (want("postgres")) {
  log("PostgreSQL: pgbench direct, through PgBouncer, through the sidecar");
  const { benchPostgres, formatPostgresBench } = await import("./postgres.ts");
  const clients = Math.min(connections, 8);
  const p = await benchPostgres({ seconds, clients, log });
  out.push("", formatPostgresBench(p, { seconds, clients }));
}

if (want("sse")) {
  log("SSE: time to first text of a streamed answer, direct and through the sidecar");
  const { benchSse, formatSseBench } = await import("./sse.ts");
  out.push("", formatSseBench(await benchSse()));
}

if (want("admission")) {
  log("Admission: the injector webhook over HTTPS");
  const { benchAdmission } = await import("../injector/bench.ts");
  const a = await benchAdmission({});
  out.push(
    "",
    "Admission (injector webhook, direct HTTPS AdmissionReview posts)",
    "```",
    JSON.stringify(a, null, 2),
    "```",
  );
}

out.push("", stealLine(steal.stop()));
process.stdout.write(`${out.join("\n")}\n`);
