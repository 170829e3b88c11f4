// HTTPS rows of `npm run bench` (`--only https`): the same ~1 KB JSON GET over TLS to an upstream
// with its own CA, directly, through nginx terminating TLS (and re-encrypting upstream, as the
// sidecar does), and through the sidecar's interception (CONNECT on the explicit proxy, a pod-CA
// leaf, the full HTTP guard, verified TLS upstream). Each with keep-alive and with a fresh
// connection (TCP + TLS handshake, and CONNECT) per request; the sidecar's and nginx's CPU per
// request from /proc. A leaf-cache miss (minting a leaf: key pair + signature) is measured apart.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PodCa } from "../../sidecar/src/protocols/http/tls/pod-ca.ts";
import { createCA, issueServingCert } from "../envtest/pki.ts";
import { freePort } from "../harness/ports.ts";
import { measureRow, processTreeCpu } from "./measure.ts";
import { startNginx, waitForPort } from "./nginx.ts";
import { spawnSidecar } from "./sidecar-process.ts";

const root = fileURLToPath(new URL("../../", import.meta.url));
const body = JSON.stringify({
  customers: Array.from({ length: 4 }, (_, i) => ({
    id: i,
    name: `Customer ${i}`,
    email: `customer${i}@example.com`,
    tier: "gold",
    note: "x".repeat(120),
  })),
});

export interface HttpsRow {
  name: string;
  keepAlive: boolean;
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  requests: number;
  /** TLS handshakes the upstream served during the row (the proxy's upstream connection reuse). */
  upstreamHandshakes: number;
  /** CPU of the proxy (nginx worker or sidecar) per request, µs. */
  proxyCpuUs?: number;
}

export interface HttpsBench {
  rows: HttpsRow[];
  /** CPU to mint one leaf (ECDSA P-256 key pair, signature, PEM export): a leaf-cache miss, µs. */
  leafMintUs: number;
}

function load(
  spec: Record<string, unknown>,
): Promise<{ rps: number; p50ms: number; p99ms: number; errors: number; requests: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, "test/bench/tls-load.ts"), JSON.stringify(spec)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.on("close", (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`tls-load exited ${code}`)),
    );
  });
}

async function leafMintUs(samples = 40): Promise<number> {
  let total = 0;
  for (let i = 0; i < samples; i++) {
    const ca = await PodCa.create({ hosts: ["bench.test"] });
    const before = process.cpuUsage();
    await ca.leaf("bench.test");
    const used = process.cpuUsage(before);
    total += used.user + used.system;
  }
  return total / samples;
}

export async function benchHttps(opts: {
  seconds: number;
  connections: number;
  log: (s: string) => void;
}): Promise<HttpsBench> {
  const dir = mkdtempSync(join(tmpdir(), "airlock-bench-https-"));
  const ca = await createCA("airlock-bench-upstream-ca");
  const serving = await issueServingCert(ca, ["localhost"]);
  const caFile = join(dir, "upstream-ca.pem");
  const certFile = join(dir, "serving.pem");
  const keyFile = join(dir, "serving.key");
  writeFileSync(caFile, ca.certPem);
  writeFileSync(certFile, serving.certPem);
  writeFileSync(keyFile, serving.keyPem, { mode: 0o600 });
  for (const [secret, key, value] of [
    ["bench", "token", "bench-token"],
    ["upstream-ca", "ca.crt", ca.certPem],
  ] as const) {
    mkdirSync(join(dir, "secrets", secret), { recursive: true });
    writeFileSync(join(dir, "secrets", secret, key), value);
  }
  const [upPort, nginxPort, adminPort, proxyPort] = (await Promise.all(
    Array.from({ length: 4 }, freePort),
  )) as [number, number, number, number];
  writeFileSync(
    join(dir, "policy.yaml"),
    `apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: bench-https, namespace: default }
spec:
  connections:
    - name: api
      protocol: http
      target: { host: localhost, port: ${upPort} }
      tls: { mode: verify-full, caSecretRef: { name: upstream-ca, key: ca.crt } }
      credentials: { secretRef: { name: bench }, http: { key: token } }
  rules:
    - { name: read, action: allow, match: { http: { methods: [GET], paths: ["/customers"] } } }
`,
  );
  const upstream: Server = createServer({ key: serving.keyPem, cert: serving.certPem }, (req, res) => {
    if (req.headers.authorization !== "Bearer bench-token") return void res.writeHead(401).end();
    res
      .writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
      .end(body);
  });
  upstream.keepAliveTimeout = 60_000;
  let upstreamHandshakes = 0;
  upstream.on("secureConnection", () => {
    upstreamHandshakes++;
  });
  await new Promise<void>((r) => upstream.listen(upPort, "127.0.0.1", () => r()));
  const nginx = await startNginx({
    listenPort: nginxPort,
    upstreamPort: upPort,
    tls: { certFile, keyFile, upstreamCaFile: caFile, upstreamName: "localhost" },
  });
  const bundle = join(dir, "trust-bundle.pem");
  const sidecar = spawnSidecar(dir, { adminPort, proxyPort, env: { AIRLOCK_TRUST_BUNDLE: bundle } });
  try {
    await waitForPort(proxyPort, () => (sidecar.exitCode !== null ? "sidecar exited" : undefined));
    if (!existsSync(bundle)) throw new Error("the sidecar wrote no trust bundle");
    const nginxWorker = nginx.process.pid as number; // the master; its worker is counted with it
    const targets = [
      { name: "direct HTTPS", port: upPort, caFile, headers: { authorization: "Bearer bench-token" } },
      { name: "nginx (TLS in and out)", port: nginxPort, caFile, headers: {}, pid: nginxWorker },
      {
        name: "sidecar interception (CONNECT)",
        port: upPort,
        caFile: bundle,
        headers: {},
        proxyPort,
        pid: sidecar.pid as number,
      },
    ];
    const rows: HttpsRow[] = [];
    for (const keepAlive of [true, false])
      for (const t of targets) {
        const spec = {
          host: "127.0.0.1",
          port: t.port,
          ...(t.proxyPort ? { proxyPort: t.proxyPort } : {}),
          servername: "localhost",
          caFile: t.caFile,
          path: "/customers",
          headers: t.headers,
          connections: keepAlive ? opts.connections : Math.min(opts.connections, 4),
          keepAlive,
        };
        opts.log(`  https: ${t.name}, ${keepAlive ? "keep-alive" : "a fresh connection per request"}`);
        const pid = t.pid;
        const { result: r, cpuUsPerRequest } = await measureRow({
          seconds: opts.seconds,
          run: async (seconds) => {
            const handshakesBefore = upstreamHandshakes;
            const result = await load({ ...spec, seconds });
            return { ...result, upstreamHandshakes: upstreamHandshakes - handshakesBefore };
          },
          requests: (r) => r.requests,
          ...(pid ? { cpu: () => processTreeCpu(pid) } : {}),
        });
        rows.push({
          name: t.name,
          keepAlive,
          rps: r.rps,
          p50ms: r.p50ms,
          p99ms: r.p99ms,
          errors: r.errors,
          upstreamHandshakes: r.upstreamHandshakes,
          requests: r.requests,
          ...(cpuUsPerRequest !== undefined ? { proxyCpuUs: cpuUsPerRequest } : {}),
        });
      }
    return { rows, leafMintUs: await leafMintUs() };
  } finally {
    sidecar.kill("SIGTERM");
    nginx.stop();
    upstream.closeAllConnections();
    upstream.close();
  }
}

export function formatHttpsBench(b: HttpsBench, opts: { seconds: number; connections: number }): string {
  const fmt = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : "-");
  const lines = [
    `HTTPS GET ~1 KB JSON, ${opts.seconds}s each: keep-alive on ${opts.connections} connections, fresh connections on ${Math.min(opts.connections, 4)}`,
    "| path | connections | req/s | p50 ms | p99 ms | proxy CPU µs/request | upstream handshakes / requests | errors |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const r of b.rows)
    lines.push(
      `| ${r.name} | ${r.keepAlive ? "keep-alive" : "fresh (handshake each)"} | ${fmt(r.rps, 0)} | ${fmt(r.p50ms)} | ${fmt(r.p99ms)} | ${r.proxyCpuUs === undefined ? "-" : fmt(r.proxyCpuUs, 0)} | ${r.upstreamHandshakes} / ${r.requests} | ${r.errors} |`,
    );
  lines.push(
    "",
    `Sidecar fresh connections hit the leaf cache (one leaf per name); a miss adds minting a leaf: ${fmt(b.leafMintUs, 0)} µs CPU.`,
  );
  return lines.join("\n");
}
