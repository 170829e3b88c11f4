// Admission latency of the webhook: AdmissionReviews POSTed over HTTPS (keep-alive, as the API
// server's client does) to the injector server on loopback, timed from request to parsed answer.
// For `npm run bench`; the numbers are a benchmark, not a test threshold.
import { Agent, request } from "node:https";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { generateCertificates } from "../../injector/src/bootstrap.ts";
import { defaultConfig } from "../../injector/src/config.ts";
import { staticPolicySource } from "../../injector/src/policies.ts";
import { startInjectorServer } from "../../injector/src/server.ts";

export interface AdmissionBench {
  name: "admission";
  /** Timed admissions (after warm-up). */
  count: number;
  concurrency: number;
  /** Client-side latency, milliseconds. */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  meanMs: number;
  maxMs: number;
  /** Server-side time (request received → answer sent), from the histogram's sum / count. */
  serverMeanMs: number;
  admissionsPerSecond: number;
  /** Size of the JSON patch answered for the sample pod. */
  patchOperations: number;
}

export interface AdmissionBenchOptions {
  count?: number;
  warmup?: number;
  concurrency?: number;
  /** Policies in the pod's namespace (a few select it). */
  policies?: number;
}

function policy(i: number): AgentAccessPolicy {
  return {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: `policy-${i}`, namespace: "agents" },
    spec: {
      podSelector: { matchLabels: { app: i % 5 === 0 ? "support-agent" : `other-${i}` } },
      connections: [
        {
          name: "db",
          protocol: "postgres",
          target: { host: `db-${i}.internal`, port: 5432 },
          credentials: { secretRef: { name: `db-${i}-creds` } },
        },
      ],
      rules: [{ name: "read", action: "allow", match: { sql: { statements: ["read"] } } }],
    },
  };
}

/** A pod as the API server sends it after the ServiceAccount plugin: two containers, a token volume. */
function samplePod(i: number): unknown {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      generateName: "support-agent-7d9f8c6b5-",
      namespace: "agents",
      labels: { app: "support-agent", "pod-template-hash": "7d9f8c6b5", n: String(i) },
      ownerReferences: [
        {
          apiVersion: "apps/v1",
          kind: "ReplicaSet",
          name: "support-agent-7d9f8c6b5",
          uid: "0c1d",
          controller: true,
        },
      ],
    },
    spec: {
      serviceAccountName: "support-agent",
      containers: [
        {
          name: "agent",
          image: "ghcr.io/example/support-agent:2.0",
          env: [{ name: "MODEL", value: "claude" }],
          ports: [{ containerPort: 8080, protocol: "TCP" }],
          resources: { requests: { cpu: "500m", memory: "512Mi" } },
          volumeMounts: [
            {
              name: "kube-api-access-x7k2p",
              mountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
              readOnly: true,
            },
          ],
          readinessProbe: { httpGet: { path: "/ready", port: 8080 } },
        },
        { name: "exporter", image: "ghcr.io/example/exporter:1.0" },
      ],
      volumes: [
        {
          name: "kube-api-access-x7k2p",
          projected: {
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: "token" } },
              { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
            ],
          },
        },
      ],
    },
  };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? 0;
}

export async function benchAdmission(opts: AdmissionBenchOptions = {}): Promise<AdmissionBench> {
  const count = opts.count ?? 200;
  const warmup = opts.warmup ?? 20;
  const concurrency = Math.max(1, opts.concurrency ?? 1);
  const bundle = await generateCertificates({ hosts: ["127.0.0.1"] });
  const policies = Array.from({ length: opts.policies ?? 20 }, (_, i) => policy(i));
  const server = await startInjectorServer({
    config: defaultConfig(),
    policies: staticPolicySource(policies),
    tls: bundle,
    host: "127.0.0.1",
    port: 0,
  });
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency, ca: bundle.caCert });
  let patchOperations = 0;

  const post = (i: number): Promise<number> => {
    const body = JSON.stringify({
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      request: {
        uid: `bench-${i}`,
        kind: { group: "", version: "v1", kind: "Pod" },
        resource: { group: "", version: "v1", resource: "pods" },
        operation: "CREATE",
        namespace: "agents",
        object: samplePod(i),
      },
    });
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: server.port,
          path: "/inject",
          method: "POST",
          agent,
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8").on("data", (d: string) => {
            text += d;
          });
          res.on("end", () => {
            const ms = performance.now() - t0;
            const review = JSON.parse(text) as { response?: { allowed?: boolean; patch?: string } };
            if (res.statusCode !== 200 || !review.response?.allowed || !review.response.patch) {
              reject(new Error(`admission ${i} failed: ${res.statusCode} ${text.slice(0, 200)}`));
              return;
            }
            patchOperations = (
              JSON.parse(Buffer.from(review.response.patch, "base64").toString()) as unknown[]
            ).length;
            resolve(ms);
          });
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  };

  try {
    for (let i = 0; i < warmup; i++) await post(-1 - i);
    server.metrics.admissionSeconds.reset();
    const times: number[] = [];
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < count) times.push(await post(next++));
      }),
    );
    const elapsed = (performance.now() - t0) / 1000;
    const sorted = [...times].sort((a, b) => a - b);
    const hist = await server.metrics.admissionSeconds.get();
    const sum = hist.values.find((v) => v.metricName?.endsWith("_sum"))?.value ?? 0;
    const n = hist.values.find((v) => v.metricName?.endsWith("_count"))?.value ?? 1;
    const round = (x: number) => Math.round(x * 1000) / 1000;
    return {
      name: "admission",
      count: times.length,
      concurrency,
      p50Ms: round(percentile(sorted, 50)),
      p90Ms: round(percentile(sorted, 90)),
      p99Ms: round(percentile(sorted, 99)),
      meanMs: round(times.reduce((a, b) => a + b, 0) / Math.max(1, times.length)),
      maxMs: round(sorted.at(-1) ?? 0),
      serverMeanMs: round((sum / Math.max(1, n)) * 1000),
      admissionsPerSecond: Math.round(times.length / elapsed),
      patchOperations,
    };
  } finally {
    agent.destroy();
    await server.close();
  }
}

if (import.meta.main) {
  const result = await benchAdmission({ count: Number(process.argv[2] ?? 200) });
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
