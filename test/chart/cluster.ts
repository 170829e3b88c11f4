// The chart on the real kube-apiserver (envtest): the third-party CRDs its optional objects need,
// a kubeconfig for the chart's own injector ServiceAccount (so the in-process injector runs with
// exactly the chart's RBAC), the rendered webhook pointed at that in-process injector, and helm
// run against the cluster.
import { spawn } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import type { Envtest } from "../envtest/connect.ts";
import { ensureHelm, ROOT, type RunResult } from "./helm.ts";

export const SCOPE_LABEL = "airlock.dev/chart-test";

function run(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** kubectl, retried while another test file updates the same shared object (409 Conflict). */
export async function kubectlOk(k8s: Envtest, args: readonly string[], stdin?: string): Promise<string> {
  let r = await k8s.kubectl(args, stdin === undefined ? {} : { stdin });
  for (let i = 0; i < 5 && r.code !== 0 && /conflict|the object has been modified/i.test(r.stderr); i++) {
    await new Promise((res) => setTimeout(res, 300 * (i + 1)));
    r = await k8s.kubectl(args, stdin === undefined ? {} : { stdin });
  }
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/**
 * The real monitoring.coreos.com (ServiceMonitor, PodMonitor, PrometheusRule) and cert-manager.io
 * (Certificate, Issuer) CRDs, from the upstream Go modules (test/chart/third-party-crds.sh), so the
 * API server checks the chart's objects against the real schemas. Server-side apply: these CRDs
 * are too large for kubectl's last-applied annotation.
 */
export async function applyThirdPartyCrds(k8s: Envtest): Promise<void> {
  const r = await run("bash", [join(ROOT, "test", "chart", "third-party-crds.sh")]);
  if (r.code !== 0) throw new Error(`third-party-crds.sh: ${r.stderr}`);
  const files = r.stdout.trim().split("\n");
  const args = ["apply", "--server-side", "--force-conflicts", "--field-manager=airlock-chart-test"];
  for (const f of files) args.push("-f", f);
  await kubectlOk(k8s, args);
  await kubectlOk(k8s, [
    "wait",
    "--for=condition=Established",
    "--timeout=60s",
    "crd/servicemonitors.monitoring.coreos.com",
    "crd/podmonitors.monitoring.coreos.com",
    "crd/prometheusrules.monitoring.coreos.com",
    "crd/certificates.cert-manager.io",
    "crd/issuers.cert-manager.io",
  ]);
}

/** A kubeconfig whose user is the ServiceAccount's token (TokenRequest, 1 h). */
export async function serviceAccountKubeconfig(
  k8s: Envtest,
  namespace: string,
  name: string,
): Promise<string> {
  const token = (await kubectlOk(k8s, ["create", "token", name, "-n", namespace, "--duration=1h"])).trim();
  const user = `system:serviceaccount:${namespace}:${name}`;
  const dir = await mkdtemp(join(tmpdir(), "airlock-chart-sa-"));
  const path = join(dir, "kubeconfig");
  await writeFile(
    path,
    stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [
        { name: "envtest", cluster: { server: k8s.server, "certificate-authority-data": b64(k8s.caPem) } },
      ],
      users: [{ name: user, user: { token } }],
      contexts: [{ name: "envtest", context: { cluster: "envtest", user, namespace } }],
      "current-context": "envtest",
    }),
    { mode: 0o600 },
  );
  return path;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** `kubectl auth can-i` as a ServiceAccount (with the groups the API server would give it). */
export async function canI(k8s: Envtest, sa: string, verbResource: readonly string[], namespace: string) {
  const [, ns] = sa.split(":").slice(1);
  const r = await k8s.kubectl([
    "auth",
    "can-i",
    ...verbResource,
    "-n",
    namespace,
    `--as=${sa}`,
    "--as-group=system:serviceaccounts",
    `--as-group=system:serviceaccounts:${ns}`,
    "--as-group=system:authenticated",
  ]);
  return r.stdout.trim() === "yes";
}

/** helm against the envtest cluster, with its own config/cache dirs. */
export async function helmCluster(k8s: Envtest, args: readonly string[]): Promise<RunResult> {
  const home = await mkdtemp(join(tmpdir(), "airlock-helm-home-"));
  return run(await ensureHelm(), args, {
    KUBECONFIG: k8s.kubeconfigPath,
    HELM_CONFIG_HOME: join(home, "config"),
    HELM_CACHE_HOME: join(home, "cache"),
    HELM_DATA_HOME: join(home, "data"),
  });
}

/**
 * The injector's flags exactly as the chart's Deployment gives them, with what only a pod has
 * replaced for the test process: free loopback ports, the ServiceAccount kubeconfig instead of the
 * in-cluster one, the namespace from the downward API, 127.0.0.1 in the bootstrap certificate (the
 * API server calls it by URL), a cert dir instead of the Secret volume.
 */
export function injectorArgs(
  chartArgs: readonly string[],
  opts: { kubeconfig: string; namespace: string; certDir?: string },
): string[] {
  const replaced = ["--port", "--metrics-port", "--host", "--log-level", "--cert-dir"];
  const kept = chartArgs.filter((a) => !replaced.some((r) => a === r || a.startsWith(`${r}=`)));
  const bootstrap = kept.includes("--bootstrap-tls");
  return [
    ...kept,
    "--port=0",
    "--metrics-port=0",
    "--host=127.0.0.1",
    "--log-level=warn",
    `--kubeconfig=${opts.kubeconfig}`,
    `--namespace=${opts.namespace}`,
    ...(bootstrap ? ["--tls-hosts=127.0.0.1"] : []),
    ...(opts.certDir ? [`--cert-dir=${opts.certDir}`] : []),
  ];
}

interface Webhook {
  name: string;
  clientConfig: { service?: unknown; url?: string; caBundle?: string };
}

/**
 * The rendered/installed webhook configuration pointed at a URL (the in-process injector): only
 * clientConfig.service becomes clientConfig.url; everything else is the chart's.
 */
export function pointAt<T extends object>(config: T, url: string, caBundle?: string): T {
  const copy = structuredClone(config);
  for (const w of ((copy as { webhooks?: Webhook[] }).webhooks ?? []) as Webhook[]) {
    delete w.clientConfig.service;
    w.clientConfig.url = url;
    if (caBundle !== undefined) w.clientConfig.caBundle = caBundle;
  }
  return copy;
}

export async function getJson<T>(k8s: Envtest, args: readonly string[]): Promise<T> {
  return JSON.parse(await kubectlOk(k8s, ["get", ...args, "-o", "json"])) as T;
}

export function podJson(name: string, labels: Record<string, string> = {}): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels },
    spec: { containers: [{ name: "agent", image: "python:3.12-slim", command: ["sleep", "3600"] }] },
  });
}

export const analystPolicy = {
  apiVersion: "airlock.dev/v1alpha1",
  kind: "AgentAccessPolicy",
  metadata: { name: "analyst" },
  spec: {
    podSelector: { matchLabels: { app: "analyst" } },
    connections: [
      {
        name: "warehouse",
        protocol: "postgres",
        target: { host: "warehouse.db.internal", port: 5432 },
        credentials: { secretRef: { name: "warehouse-readonly" } },
      },
    ],
    rules: [{ name: "read", action: "allow", match: { sql: { statements: ["read"] } } }],
  },
};

export const warehouseSecret = {
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "warehouse-readonly" },
  stringData: { username: "agent", password: "s3cret" },
};

/** Polls `fn` until it returns true (hooks cannot use expect.poll). */
export async function waitFor(fn: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
