// Bootstrap TLS end to end: the injector entry point (injector/src/main.ts, as the Deployment
// runs it) makes its own CA and serving certificate, stores them in a Secret, writes the CA into
// the caBundle of a MutatingWebhookConfiguration that was installed without one, and the real
// API server then trusts it and injects pods. A second injector adopts the same Secret.
import type { V1MutatingWebhookConfiguration } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningInjector, startInjector } from "../../injector/src/main.ts";
import { webhookConfiguration } from "../../injector/src/webhook-config.ts";
import { apply, connect } from "../envtest/connect.ts";
import { freePort } from "../harness/ports.ts";
import { applyCrds, getPod, podYaml, SCOPE_LABEL, scopedNamespace, scopeId } from "./harness.ts";

const k8s = connect();
const scope = scopeId();
const webhookName = `airlock-injector-bootstrap-test-${scope}`;
let systemNs: string;
let agentsNs: string;
let port: number;
const running: RunningInjector[] = [];

function args(p: number): string[] {
  return [
    "--bootstrap-tls",
    "--kubeconfig",
    k8s.kubeconfigPath,
    "--namespace",
    systemNs,
    "--webhook-config-name",
    webhookName,
    "--tls-hosts",
    "127.0.0.1",
    "--host",
    "127.0.0.1",
    "--port",
    String(p),
    "--metrics-port",
    "0",
    "--watch-namespaces",
    agentsNs,
    "--image",
    "ghcr.io/airlock-dev/airlock:bootstrap-test",
    "--log-level",
    "warn",
  ];
}

async function caBundles(): Promise<(string | undefined)[]> {
  const r = await k8s.kubectl(["get", "mutatingwebhookconfiguration", webhookName, "-o", "json"]);
  const cfg = JSON.parse(r.stdout) as V1MutatingWebhookConfiguration;
  return (cfg.webhooks ?? []).map((w) => w.clientConfig.caBundle);
}

beforeAll(async () => {
  await applyCrds(k8s);
  systemNs = await k8s.createNamespace("airlock-system");
  agentsNs = await scopedNamespace(k8s, "bootstrap-agents", scope, { "airlock.dev/inject": "enabled" });
  port = await freePort();
  const cfg = webhookConfiguration({
    name: webhookName,
    url: `https://127.0.0.1:${port}/inject`,
    failurePolicy: "Fail",
    timeoutSeconds: 5,
    extraNamespaceSelector: [{ key: SCOPE_LABEL, operator: "In", values: [scope] }],
  });
  await apply(k8s, cfg);
});

afterAll(async () => {
  for (const r of running) await r.stop();
  await k8s.kubectl(["delete", "mutatingwebhookconfiguration", webhookName, "--ignore-not-found"]);
});

describe("bootstrap TLS against the real API server", () => {
  it("starts with no caBundle, so the API server cannot call the webhook", async () => {
    expect(await caBundles()).toEqual([undefined, undefined, undefined]); // namespace, object, required
  });

  it("generates a CA and certificate, stores them, patches caBundle, and pods get injected", async () => {
    running.push(await startInjector(args(port)));
    const bundles = await caBundles();
    expect(bundles[0]).toBeTruthy();
    expect(bundles[1]).toBe(bundles[0]);
    expect(bundles[2]).toBe(bundles[0]);
    const ca = Buffer.from(bundles[0] ?? "", "base64").toString("utf8");
    expect(ca).toContain("BEGIN CERTIFICATE");

    const secret = await k8s.kubectl(["get", "secret", "-n", systemNs, "airlock-injector-tls", "-o", "json"]);
    expect(secret.code, secret.stderr).toBe(0);
    const data = (JSON.parse(secret.stdout) as { data: Record<string, string> }).data;
    expect(Object.keys(data).sort()).toEqual(["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    expect(Buffer.from(data["ca.crt"] ?? "", "base64").toString()).toBe(ca);

    const r = await k8s.kubectl(["apply", "-n", agentsNs, "-f", "-"], { stdin: podYaml("via-bootstrap") });
    expect(r.code, r.stderr).toBe(0);
    const pod = await getPod(k8s, agentsNs, "via-bootstrap");
    expect(pod.spec?.initContainers?.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
    expect(pod.spec?.initContainers?.[1]?.image).toBe("ghcr.io/airlock-dev/airlock:bootstrap-test");
  });

  it("a second replica adopts the stored CA instead of replacing it", async () => {
    const before = await caBundles();
    const secretBefore = await k8s.kubectl([
      "get",
      "secret",
      "-n",
      systemNs,
      "airlock-injector-tls",
      "-o",
      "json",
    ]);
    const second = await startInjector(args(await freePort()));
    running.push(second);
    expect(await caBundles()).toEqual(before);
    const secretAfter = await k8s.kubectl([
      "get",
      "secret",
      "-n",
      systemNs,
      "airlock-injector-tls",
      "-o",
      "json",
    ]);
    const rv = (s: string) =>
      (JSON.parse(s) as { metadata: { resourceVersion: string } }).metadata.resourceVersion;
    expect(rv(secretAfter.stdout)).toBe(rv(secretBefore.stdout));
  });

  it("serves /healthz, /readyz and /metrics on the plain-HTTP metrics port", async () => {
    const metricsPort = running[0]?.server.metricsPort;
    expect(metricsPort).toBeGreaterThan(0);
    const base = `http://127.0.0.1:${metricsPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/airlock_injector_admissions_total\{result="injected"\} 1/);
    expect(metrics).toContain('airlock_injector_tls_reloads_total{result="success"}');
  });
});
