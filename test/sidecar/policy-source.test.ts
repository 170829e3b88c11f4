// The sidecar's Kubernetes policy source against the real API server: selection by podSelector,
// live updates, and an API-server outage (a TCP relay in between is cut) that keeps the last good
// policy in force until the watch reconnects.
import { KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_VERSION } from "../../api/src/index.ts";
import { accessFromKubeConfig } from "../../sidecar/src/kube/access.ts";
import { createKubeClient } from "../../sidecar/src/kube/client.ts";
import { createPolicyStore } from "../../sidecar/src/runtime/policy-store.ts";
import { startKubernetesSource } from "../../sidecar/src/sources/kubernetes.ts";
import { createMetrics } from "../../sidecar/src/telemetry/metrics.ts";
import { apply as applyTo, connect } from "../envtest/connect.ts";
import { relay } from "../harness/relay.ts";

const k8s = connect();
const logger = pino({ level: "silent" });
let ns: string;

const policy = (name: string, app: string, rules: unknown[]) => ({
  apiVersion: API_VERSION,
  kind: "AgentAccessPolicy",
  metadata: { name, namespace: ns },
  spec: {
    podSelector: { matchLabels: { app } },
    connections: [{ name: `${name}-api`, protocol: "http", target: { host: `${name}.example`, port: 443 } }],
    rules,
  },
});
const allowGet = [{ name: "get", action: "allow", match: { http: { methods: ["GET"] } } }];
const apply = (obj: unknown) => applyTo(k8s, obj);
const subject = { serviceAccount: "system:serviceaccount:x:agent", groups: [] };
const get = { kind: "http", method: "GET", path: "/", websocket: false } as const;

beforeAll(async () => {
  expect((await k8s.kubectl(["apply", "-f", new URL("../../crds/", import.meta.url).pathname])).code).toBe(0);
  await k8s.kubectl(["wait", "--for=condition=Established", "crd/agentaccesspolicies.airlock.dev"]);
  ns = await k8s.createNamespace("policy-source");
});

describe("Kubernetes policy source", () => {
  const metrics = createMetrics({ defaultMetrics: false });
  const store = createPolicyStore({ logger, metrics });
  const cut = relay(new URL(k8s.kubeConfig.getCurrentCluster()?.server ?? ""));
  let stop: () => Promise<void> = async () => {};

  afterAll(async () => {
    await stop();
    await cut.down();
  });

  it("selects only policies whose podSelector matches the pod's labels", async () => {
    await apply(policy("mine", "analyst", allowGet));
    await apply(policy("theirs", "ops", allowGet));
    const port = await cut.up();
    const kc = new KubeConfig();
    kc.loadFromString(k8s.kubeConfig.exportConfig());
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("no cluster in kubeconfig");
    (cluster as { server: string }).server = `https://127.0.0.1:${port}`;
    // The serving certificate names 127.0.0.1, so verification still holds through the relay.
    const source = startKubernetesSource({
      kube: createKubeClient(accessFromKubeConfig(kc)),
      namespace: ns,
      podLabels: { app: "analyst" },
      store,
      logger,
      metrics,
      initialBackoffMs: 200,
      maxBackoffMs: 500,
    });
    stop = source.stop;
    await source.synced;
    expect(store.current().policies).toEqual([`${ns}/mine`]);
    expect(store.current().evaluate("mine-api", subject, get).action).toBe("allow");
    expect(store.current().evaluate("theirs-api", subject, get).action).toBe("deny");
  });

  it("swaps in an updated policy", async () => {
    await apply(policy("mine", "analyst", [{ name: "nothing", action: "deny" }]));
    await expect
      .poll(() => store.current().evaluate("mine-api", subject, get).rule, { timeout: 10_000 })
      .toBe("nothing");
  });

  it("keeps the last good policy while the API server is unreachable, then catches up", async () => {
    const before = store.generation();
    await cut.down();
    await expect
      .poll(
        async () =>
          (await metrics.registry.getSingleMetricAsString("airlock_policy_source_up")).includes(
            "airlock_policy_source_up 0",
          ),
        { timeout: 15_000 },
      )
      .toBe(true);
    // Changes made during the outage are not seen, and nothing is dropped either.
    await apply(policy("mine", "analyst", allowGet));
    await new Promise((r) => setTimeout(r, 1000));
    expect(store.generation()).toBe(before);
    expect(store.current().evaluate("mine-api", subject, get)).toMatchObject({
      action: "deny",
      rule: "nothing",
    });
    await cut.up();
    await expect
      .poll(() => store.current().evaluate("mine-api", subject, get).action, { timeout: 20_000 })
      .toBe("allow");
    expect(await metrics.registry.getSingleMetricAsString("airlock_policy_source_up")).toContain(
      "airlock_policy_source_up 1",
    );
  });

  it("reports a policy the API server accepts but the compiler cannot enforce, and keeps the rest", async () => {
    const broken = policy("broken", "analyst", [
      { name: "sql-on-http", action: "deny", match: { sql: { statements: ["drop"] } } },
    ]);
    await apply(broken);
    await expect
      .poll(
        async () =>
          (await metrics.registry.getSingleMetricAsString("airlock_policy_problems")).includes(
            "airlock_policy_problems 1",
          ),
        { timeout: 10_000 },
      )
      .toBe(true);
    expect(store.current().policies).toEqual([`${ns}/mine`]);
    expect(store.current().evaluate("broken-api", subject, get).action).toBe("deny");
  });
});
