// `npm run bench`: side-by-side baselines, one run, ratios first. Numbers on a shared 2-core
// machine are noisy; the ratios against a baseline measured in the same run are what to read.
import { parseArgs } from "node:util";
import { benchHttp, FIXED_RATE } from "./http.ts";
import { stealLine, stealMeter } from "./steal.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    "soak-minutes": { type: "string", default: "1" },
    connections: { type: "string", default: "16" },
    only: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  process.stdout.write(
    [
      "Usage: npm run bench [-- --seconds 8 --connections 16 --soak-minutes 1",
      "                         --only footprint,http,https,postgres,sse,admission,soak (any of them)]",
      "",
      "footprint: idle sidecar memory (HTTP only, HTTP + PostgreSQL), then a table with the",
      "memory after the HTTP load and after the soak. soak: a short fixed-rate soak (npm run soak",
      "for the 10-minute one; its last figures, in .airlock/soak/last.json, are printed too).",
      "",
    ].join("\n"),
  );
  process.exit(0);
}
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const log = (s: string) => process.stderr.write(`${s}\n`);
const want = (section: string) => !values.only || values.only.split(",").includes(section);
const fmt = (n: number, d = 2) => n.toFixed(d);
const out: string[] = [];
const steal = stealMeter();
/** Memory figures gathered by the sections, printed together at the end. */
const footprint: { when: string; rssMb: number; anonMb: number; heapUsedMb: number }[] = [];
let bareNode: { rssMb: number; anonMb: number } | undefined;

if (want("footprint")) {
  log("Footprint: idle sidecar memory");
  const { benchFootprint } = await import("./footprint.ts");
  const f = await benchFootprint(log);
  bareNode = f.bareNode;
  for (const r of f.rows) footprint.push({ when: `idle, ${r.name}, ${r.launch}`, ...r });
}

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
    `Sidecar run ${h.launch}. Memory (RSS / V8 heap used): ${h.sidecarMemory
      .map((m) => `${m.when} ${fmt(m.rssMb, 0)} / ${fmt(m.heapUsedMb, 0)} MB`)
      .join(", ")}`,
  );
  for (const m of h.sidecarMemory) footprint.push({ ...m, when: `HTTP bench, ${m.when} (HTTP only)` });
  const direct = h.fixedRate[0];
  if (direct) {
    out.push(
      "",
      `HTTP latency at a fixed ${FIXED_RATE} req/s, 16 connections, ${seconds}s each (open loop, fortio, 10 µs buckets; added = minus direct; aim: added p99 ≤ 500 µs)`,
      "| path | req/s | p50 µs | p90 µs | p99 µs | p99.9 µs | added p50 | added p90 | added p99 | errors |",
      "|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const r of h.fixedRate)
      out.push(
        `| ${r.name} | ${fmt(r.rps, 0)} | ${fmt(r.p50us, 0)} | ${fmt(r.p90us, 0)} | ${fmt(r.p99us, 0)} | ${fmt(r.p999us, 0)} | ${fmt(r.p50us - direct.p50us, 0)} | ${fmt(r.p90us - direct.p90us, 0)} | ${fmt(r.p99us - direct.p99us, 0)} | ${r.errors} |`,
      );
  }
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

if (want("soak")) {
  const minutes = Number(values["soak-minutes"]);
  log(`Soak: ${minutes} min at a fixed rate, HTTP and PostgreSQL`);
  const { runSoak } = await import("../soak/soak.ts");
  const { soakMinutes } = await import("../soak/verdict.ts");
  const s = await runSoak({ minutes, rate: 100, windowSeconds: 10, warmupSeconds: 10, log });
  out.push(
    "",
    `Soak (short): ${minutes} min at 100 HTTP req/s + 100 PostgreSQL statements/s, open loop, masking and audit on (npm run soak for the 10-minute run)`,
    soakMinutes(s),
  );
  const last = s.windows[s.windows.length - 1];
  if (last) footprint.push({ when: `after the ${minutes}-min soak (HTTP + PostgreSQL)`, ...last });
  const { LAST_SOAK } = await import("../soak/run.ts");
  const { existsSync, readFileSync } = await import("node:fs");
  if (existsSync(LAST_SOAK)) {
    const full = JSON.parse(readFileSync(LAST_SOAK, "utf8")) as import("../soak/verdict.ts").SoakResult;
    out.push(
      "",
      `Last \`npm run soak\` (${LAST_SOAK}): ${full.minutes} min at ${full.rate}/s each, started ${full.startedAt}, sidecar run ${full.launch ?? "?"}`,
      soakMinutes(full),
    );
    const end = full.windows[full.windows.length - 1];
    if (end) footprint.push({ when: `after the last ${full.minutes}-min soak, ${full.startedAt}`, ...end });
  }
}

if (footprint.length) {
  out.push(
    "",
    `Footprint (aim: idle RSS ≤ 70 MB, ≤ 90 MB after load; private = anonymous pages, what each pod adds when the node binary's pages are shared)${bareNode ? `; bare Node idle ${fmt(bareNode.rssMb, 0)} MB (private ${fmt(bareNode.anonMb, 0)})` : ""}`,
    "| when | RSS MB | private MB | V8 heap used MB |",
    "|---|---|---|---|",
    ...footprint.map(
      (m) => `| ${m.when} | ${fmt(m.rssMb, 0)} | ${fmt(m.anonMb, 0)} | ${fmt(m.heapUsedMb, 0)} |`,
    ),
  );
}

out.push("", stealLine(steal.stop()));
process.stdout.write(`${out.join("\n")}\n`);
