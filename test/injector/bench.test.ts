// Runs the admission benchmark once (so `npm test` proves it works) and measures what the webhook
// adds to a pod creation through the real API server. Prints numbers; asserts only sanity, since
// these machines are noisy (performance is a benchmark, never a timed test).
import { CoreV1Api } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "../envtest/connect.ts";
import { benchAdmission } from "./bench.ts";
import {
  applyCrds,
  installWebhook,
  scopedNamespace,
  scopeId,
  startTestInjector,
  type TestInjector,
} from "./harness.ts";

const k8s = connect();
const scope = scopeId();
const webhookName = `airlock-injector-bench-test-${scope}`;
let injector: TestInjector;
let nsOn: string;
let nsOff: string;

beforeAll(async () => {
  await applyCrds(k8s);
  nsOn = await scopedNamespace(k8s, "bench-on", scope, { "airlock.dev/inject": "enabled" });
  nsOff = await scopedNamespace(k8s, "bench-off", scope);
  injector = await startTestInjector(k8s, [nsOn]);
  await installWebhook(k8s, { name: webhookName, url: injector.server.url, caPem: injector.caPem, scope });
});

afterAll(async () => {
  await k8s.kubectl(["delete", "mutatingwebhookconfiguration", webhookName, "--ignore-not-found"]);
  await injector?.stop();
});

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? 0;
};

describe("admission latency", () => {
  it("benchAdmission: 200 direct HTTPS admissions", async () => {
    const r = await benchAdmission({ count: 200 });
    process.stdout.write(`[bench] ${JSON.stringify(r)}\n`);
    expect(r.count).toBe(200);
    expect(r.p50Ms).toBeGreaterThan(0);
    expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms);
    expect(r.patchOperations).toBeGreaterThan(5);
  });

  it("pod creation through the API server, with and without the webhook", async () => {
    const core = k8s.kubeConfig.makeApiClient(CoreV1Api);
    const n = 40;
    const time = async (namespace: string) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        const pod = await core.createNamespacedPod({
          namespace,
          body: {
            metadata: { generateName: "bench-" },
            spec: { containers: [{ name: "agent", image: "python:3.12-slim" }] },
          },
        });
        out.push(performance.now() - t0);
        if (namespace === nsOn) expect(pod.spec?.initContainers?.length).toBe(2);
      }
      return out;
    };
    await time(nsOff); // warm-up of both paths
    const without = await time(nsOff);
    const withHook = await time(nsOn);
    const line = {
      name: "pod-create-via-apiserver",
      count: n,
      withoutWebhookP50Ms: Math.round(pct(without, 50) * 100) / 100,
      withWebhookP50Ms: Math.round(pct(withHook, 50) * 100) / 100,
      withoutWebhookP99Ms: Math.round(pct(without, 99) * 100) / 100,
      withWebhookP99Ms: Math.round(pct(withHook, 99) * 100) / 100,
    };
    process.stdout.write(`[bench] ${JSON.stringify(line)}\n`);
    expect(withHook.length).toBe(n);
  });
});
