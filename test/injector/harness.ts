// Shared pieces of the injector's envtest suites: the injector (webhook server + policy
// controller) running inside the test process, and a MutatingWebhookConfiguration scoped to the
// namespaces of one test file.
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { V1Pod } from "@kubernetes/client-node";
import { expect } from "vitest";
import { defaultConfig, type InjectorConfig } from "../../injector/src/config.ts";
import { createPolicyController, type PolicyController } from "../../injector/src/controller.ts";
import { type InjectorServer, startInjectorServer } from "../../injector/src/server.ts";
import { webhookConfiguration } from "../../injector/src/webhook-config.ts";
import type { Envtest } from "../envtest/connect.ts";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const SCOPE_LABEL = "airlock.dev/injector-test";

export const testConfig: InjectorConfig = defaultConfig({ image: "ghcr.io/airlock-dev/airlock:envtest" });

/** Applies crds/ (idempotent; CRDs are shared by every file) and waits until they are served. */
export async function applyCrds(k8s: Envtest): Promise<void> {
  // Other files apply the same CRDs concurrently: a conflict on the shared object is retried.
  let r = await k8s.kubectl(["apply", "-f", join(ROOT, "crds")]);
  for (let i = 0; i < 3 && r.code !== 0; i++) {
    await new Promise((res) => setTimeout(res, 500));
    r = await k8s.kubectl(["apply", "-f", join(ROOT, "crds")]);
  }
  expect(r.code, `kubectl apply -f crds/: ${r.stderr}`).toBe(0);
  const w = await k8s.kubectl([
    "wait",
    "--for=condition=Established",
    "--timeout=60s",
    "crd/accessrequests.airlock.dev",
    "crd/agentaccesspolicies.airlock.dev",
  ]);
  expect(w.code, `CRDs not established: ${w.stderr}`).toBe(0);
}

export function scopeId(): string {
  return randomBytes(4).toString("hex");
}

/** A namespace of this file: labelled with the scope (so only our webhook sees it) and more. */
export async function scopedNamespace(
  k8s: Envtest,
  prefix: string,
  scope: string,
  labels: Record<string, string> = {},
): Promise<string> {
  const ns = await k8s.createNamespace(prefix);
  const pairs = Object.entries({ [SCOPE_LABEL]: scope, ...labels }).map(([k, v]) => `${k}=${v}`);
  const r = await k8s.kubectl(["label", "namespace", ns, "--overwrite", ...pairs]);
  if (r.code !== 0) throw new Error(`label ${ns}: ${r.stderr}`);
  return ns;
}

export async function installWebhook(
  k8s: Envtest,
  opts: { name: string; url: string; caPem: string; scope: string },
): Promise<void> {
  const config = webhookConfiguration({
    name: opts.name,
    url: opts.url,
    caBundlePem: opts.caPem,
    failurePolicy: "Fail",
    timeoutSeconds: 5,
    extraNamespaceSelector: [{ key: SCOPE_LABEL, operator: "In", values: [opts.scope] }],
  });
  const r = await k8s.kubectl(["apply", "-f", "-"], { stdin: JSON.stringify(config) });
  if (r.code !== 0) throw new Error(`install webhook: ${r.stderr}`);
}

export interface TestInjector {
  server: InjectorServer;
  controller: PolicyController;
  caPem: string;
  stop(): Promise<void>;
}

/** Webhook server on 127.0.0.1 (a cert from the cluster CA) and a controller for `namespaces`. */
export async function startTestInjector(k8s: Envtest, namespaces: readonly string[]): Promise<TestInjector> {
  const cert = await k8s.issueServingCert(["127.0.0.1"]);
  const controller = createPolicyController({ kubeConfig: k8s.kubeConfig, namespaces, resyncMs: 60_000 });
  await controller.start();
  const server = await startInjectorServer({
    config: testConfig,
    policies: controller,
    tls: { cert: cert.certPem, key: cert.keyPem },
    host: "127.0.0.1",
    port: 0,
    ready: () => controller.synced(),
  });
  let stopped = false;
  return {
    server,
    controller,
    caPem: k8s.caPem,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.close();
      await controller.stop();
    },
  };
}

export async function getPod(k8s: Envtest, ns: string, name: string): Promise<V1Pod> {
  const r = await k8s.kubectl(["get", "pod", "-n", ns, name, "-o", "json"]);
  if (r.code !== 0) throw new Error(`get pod ${ns}/${name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as V1Pod;
}

export function podYaml(
  name: string,
  opts: {
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    spec?: Record<string, unknown>;
    generateName?: boolean;
  } = {},
): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      ...(opts.generateName ? { generateName: `${name}-` } : { name }),
      labels: opts.labels ?? {},
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
    },
    spec: opts.spec ?? {
      containers: [{ name: "agent", image: "python:3.12-slim", command: ["sleep", "3600"] }],
    },
  });
}

/** Polls `fn` until it returns a truthy value (for hooks, where expect.poll is not available). */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
