// HTTP rows of `npm run bench`: the same wrk load against the upstream directly, through nginx,
// through the sidecar (policy + credential injection + audit), and through the sidecar with JSON
// masking (PII detectors plus the whole secrets group; AIRLOCK_BENCH_PII_ONLY=1 leaves secrets out). One run, side by side, so the ratios are comparable on a noisy 2-core machine.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../harness/ports.ts";
import { atFixedRate, type FixedRateResult } from "./fixed-rate.ts";
import { cpuSeconds, measureRow } from "./measure.ts";
import { startNginx, waitForPort } from "./nginx.ts";
import { processMemory, sidecarLaunch, spawnSidecar } from "./sidecar-process.ts";
import { type LoadResult, wrk } from "./wrk.ts";

/** ~1 KB of JSON with PII in it, like an internal API's record. */
export const body = JSON.stringify({
  customers: Array.from({ length: 4 }, (_, i) => ({
    id: i,
    name: `Customer ${i}`,
    email: `customer${i}@example.com`,
    phone: "+1 415 555 0132",
    note: "prefers e-mail; card on file 4111 1111 1111 1111",
    tier: "gold",
  })),
});

/** The upstream of the HTTP rows (and the soak): the record above, for the bench token only. */
export function startUpstream(port: number, onRequest?: () => void): Promise<Server> {
  const server = createServer((req, res) => {
    onRequest?.();
    if (req.headers.authorization !== "Bearer bench-token") {
      res.writeHead(401).end();
      return;
    }
    res
      .writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
      .end(body);
  });
  server.keepAliveTimeout = 60_000;
  return new Promise((r) => server.listen(port, "127.0.0.1", () => r(server)));
}

function policy(upstreamPort: number, plainPort: number, maskedPort: number): string {
  const conn = (name: string, port: number) => `
    - name: ${name}
      protocol: http
      target: { host: 127.0.0.1, port: ${upstreamPort} }
      tls: { mode: disable }
      credentials: { secretRef: { name: bench }, http: { key: token } }
      listen: { port: ${port} }`;
  return `apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: bench, namespace: default }
spec:
  connections:${conn("plain", plainPort)}${conn("masked", maskedPort)}
  rules:
    - { name: no-admin, action: deny, match: { http: { paths: ["/admin/**"] } } }
    - { name: read, action: allow, match: { http: { methods: [GET], paths: ["/customers", "/customers/**"] } } }
  masking:
    - { name: pii, connections: [masked], detectors: [email, phone, creditCard], strategy: partial }${
      process.env.AIRLOCK_BENCH_PII_ONLY
        ? ""
        : "\n    - { name: secrets, connections: [masked], detectors: [secrets], strategy: redact }"
    }
`;
}

export interface HttpBench {
  rows: { name: string; result: LoadResult; sidecarCpuUsPerRequest?: number }[];
  /** Sidecar RSS after the load (the last row). */
  sidecarRssMb: number;
  /** Memory check: the sidecar's RSS and V8 heap in use, idle (before load) and after each sidecar row. */
  sidecarMemory: { when: string; rssMb: number; anonMb: number; heapUsedMb: number }[];
  /** How the sidecar process was run (sidecar-process.ts). */
  launch: string;
  /** Latency at a fixed rate (FIXED_RATE req/s over 16 connections, open loop; fixed-rate.ts), per path. */
  fixedRate: ({ name: string } & FixedRateResult)[];
}

/** The rate Istio publishes its latency at: held by the load generator whatever the answers take. */
export const FIXED_RATE = 1000;

const rssMb = (pid: number) => processMemory(pid).rssMb;

/** V8 heap in use, from the sidecar's own /metrics (prom-client default metrics). */
async function heapUsedMb(adminPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const m = /^airlock_process_nodejs_heap_size_used_bytes (\S+)$/m.exec(text);
  return m ? Number(m[1]) / 1024 / 1024 : Number.NaN;
}

export async function benchHttp(opts: {
  seconds: number;
  connections: number;
  log: (s: string) => void;
}): Promise<HttpBench> {
  const dir = mkdtempSync(join(tmpdir(), "airlock-bench-"));
  mkdirSync(join(dir, "secrets", "bench"), { recursive: true });
  writeFileSync(join(dir, "secrets", "bench", "token"), "bench-token");
  const [upPort, nginxPort, plainPort, maskedPort, adminPort, proxyPort] = (await Promise.all(
    Array.from({ length: 6 }, freePort),
  )) as [number, number, number, number, number, number];
  writeFileSync(join(dir, "policy.yaml"), policy(upPort, plainPort, maskedPort));

  const upstream = await startUpstream(upPort);
  const nginx = await startNginx({ listenPort: nginxPort, upstreamPort: upPort });
  const launch = await sidecarLaunch();
  const sidecar = spawnSidecar(dir, { adminPort, proxyPort, launch });
  try {
    await waitForPort(plainPort, () => (sidecar.exitCode !== null ? "sidecar exited" : undefined));
    const pid = sidecar.pid as number;
    const memory: HttpBench["sidecarMemory"] = [];
    const sample = async (when: string) =>
      memory.push({ when, ...processMemory(pid), heapUsedMb: await heapUsedMb(adminPort) });
    await sample("idle");
    const targets: [string, number][] = [
      ["direct", upPort],
      ["nginx", nginxPort],
      ["sidecar (policy+audit)", plainPort],
      ["sidecar + JSON masking", maskedPort],
    ];
    const rows: HttpBench["rows"] = [];
    for (const [name, port] of targets) {
      opts.log(`  http: ${name} (${opts.seconds}s, ${opts.connections} connections)`);
      // The upstream checks the token: direct and nginx present it themselves, the sidecar injects it.
      const headers = name === "direct" ? { authorization: "Bearer bench-token" } : undefined;
      const throughSidecar = port === plainPort || port === maskedPort;
      const { result, cpuUsPerRequest } = await measureRow({
        seconds: opts.seconds,
        run: (seconds) =>
          wrk(`http://127.0.0.1:${port}/customers`, {
            seconds,
            connections: opts.connections,
            ...(headers ? { headers } : {}),
          }),
        requests: (r) => r.rps * opts.seconds,
        ...(throughSidecar ? { cpu: () => cpuSeconds(pid) } : {}),
      });
      rows.push({
        name,
        result,
        ...(cpuUsPerRequest !== undefined ? { sidecarCpuUsPerRequest: cpuUsPerRequest } : {}),
      });
      if (throughSidecar) await sample(`after ${name}`);
    }
    const fixedRate: HttpBench["fixedRate"] = [];
    for (const [name, port] of targets) {
      opts.log(`  http: ${name} at ${FIXED_RATE} req/s (${opts.seconds}s, 16 connections)`);
      const headers = name === "direct" ? { authorization: "Bearer bench-token" } : undefined;
      fixedRate.push({
        name,
        ...(await atFixedRate({
          url: `http://127.0.0.1:${port}/customers`,
          qps: FIXED_RATE,
          connections: 16,
          seconds: opts.seconds,
          log: opts.log,
          ...(headers ? { headers } : {}),
        })),
      });
    }
    return { rows, sidecarRssMb: rssMb(pid), sidecarMemory: memory, launch: launch.label, fixedRate };
  } finally {
    sidecar.kill("SIGTERM");
    nginx.stop();
    upstream.close();
    upstream.closeAllConnections();
  }
}
