// The policy controller against the real API server: status conditions (through the status
// subresource) for good and broken policies, the printer columns `kubectl get aap` shows, Events,
// and recovery when the missing Secret appears.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { createPolicyController, type PolicyController } from "../../injector/src/controller.ts";
import { apply as applyTo, connect } from "../envtest/connect.ts";
import { applyCrds } from "./harness.ts";

const k8s = connect();
let ns: string;
let controller: PolicyController;

const httpPolicy = (name: string, secretName: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: "airlock.dev/v1alpha1",
  kind: "AgentAccessPolicy",
  metadata: { name, namespace: ns },
  spec: {
    connections: [
      {
        name: "tickets",
        protocol: "http",
        target: { host: "tickets.internal", port: 443 },
        credentials: { secretRef: { name: secretName }, ...extra },
      },
      { name: "docs", protocol: "http", target: { host: "docs.internal", port: 443 } },
    ],
    rules: [
      { name: "read", action: "allow", match: { http: { methods: ["GET"] } } },
      { name: "no-admin", action: "deny", match: { http: { paths: ["/admin/**"] } } },
    ],
  },
});

const apply = (obj: unknown) => applyTo(k8s, obj);

async function getPolicy(name: string): Promise<AgentAccessPolicy> {
  const r = await k8s.kubectl(["get", "aap", "-n", ns, name, "-o", "json"]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as AgentAccessPolicy;
}

async function ready(name: string): Promise<string> {
  const p = await getPolicy(name);
  const c = p.status?.conditions?.find((x) => x.type === "Ready");
  return c ? `${c.status}/${c.reason}` : "none";
}

beforeAll(async () => {
  await applyCrds(k8s);
  ns = await k8s.createNamespace("policy-status");
  controller = createPolicyController({ kubeConfig: k8s.kubeConfig, namespaces: [ns], resyncMs: 60_000 });
  await controller.start();
});

afterAll(async () => {
  await controller?.stop();
});

describe("policy controller on the real API server", () => {
  it("marks a policy whose Secret and key exist Ready=True (Valid) with the printer-column fields", async () => {
    await apply({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "tickets-token", namespace: ns },
      stringData: { token: "t0ken" },
    });
    await apply(httpPolicy("good", "tickets-token"));
    await expect.poll(() => ready("good"), { timeout: 15_000 }).toBe("True/Valid");
    const p = await getPolicy("good");
    expect(p.status?.observedGeneration).toBe(p.metadata.generation);
    expect(p.status?.connections).toBe("tickets,docs");
    expect(p.status?.rules).toBe(2);
    const c = p.status?.conditions?.find((x) => x.type === "Ready");
    expect(c?.message).toContain("Secrets present: tickets-token");
    expect(c?.observedGeneration).toBe(p.metadata.generation);

    const table = await k8s.kubectl(["get", "aap", "-n", ns, "good"]);
    expect(table.code, table.stderr).toBe(0);
    const [header, row] = table.stdout.trim().split("\n");
    expect(header).toMatch(/NAME\s+CONNECTIONS\s+RULES\s+READY/);
    expect(row).toMatch(/^good\s+tickets,docs\s+2\s+True/);
  });

  it("marks a policy whose Secret is missing Ready=False (SecretNotFound) with an Event, and recovers", async () => {
    await apply(httpPolicy("broken", "missing-token"));
    await expect.poll(() => ready("broken"), { timeout: 15_000 }).toBe("False/SecretNotFound");
    const p = await getPolicy("broken");
    const c = p.status?.conditions?.find((x) => x.type === "Ready");
    expect(c?.message).toBe(
      `connection tickets: Secret missing-token not found in namespace ${ns} (credentials.http.key)`,
    );
    const wide = await k8s.kubectl(["get", "aap", "-n", ns, "broken", "-o", "wide"]);
    expect(wide.stdout).toMatch(/broken\s+tickets,docs\s+2\s+False\s+SecretNotFound/);

    await expect
      .poll(
        async () => {
          const ev = await k8s.kubectl([
            "get",
            "events",
            "-n",
            ns,
            "--field-selector",
            "involvedObject.name=broken,reason=SecretNotFound",
            "-o",
            "json",
          ]);
          return (JSON.parse(ev.stdout) as { items: { type: string }[] }).items.map((e) => e.type);
        },
        { timeout: 10_000 },
      )
      .toContain("Warning");

    // The Secret appears: the Secret informer re-queues the policy.
    await apply({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "missing-token", namespace: ns },
      stringData: { token: "now-here" },
    });
    await expect.poll(() => ready("broken"), { timeout: 15_000 }).toBe("True/Valid");
  });

  it("reports a missing key as SecretKeyMissing, naming the keys the Secret has", async () => {
    await apply({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "api-key", namespace: ns },
      stringData: { "api-key": "k", other: "x" },
    });
    await apply(
      httpPolicy("wrong-key", "api-key", { http: { header: "x-api-key", key: "apikey", format: "{value}" } }),
    );
    await expect.poll(() => ready("wrong-key"), { timeout: 15_000 }).toBe("False/SecretKeyMissing");
    const c = (await getPolicy("wrong-key")).status?.conditions?.find((x) => x.type === "Ready");
    expect(c?.message).toContain(
      'Secret api-key has no key "apikey" (credentials.http.key); its keys: api-key, other',
    );
  });

  it("reports semantic problems the CRD schema lets through as Invalid", async () => {
    // Valid for the API server (no CEL rule covers it), wrong for the policy compiler: an SQL
    // match on a rule whose only connection speaks HTTP could never apply.
    await apply({
      apiVersion: "airlock.dev/v1alpha1",
      kind: "AgentAccessPolicy",
      metadata: { name: "invalid", namespace: ns },
      spec: {
        connections: [{ name: "api", protocol: "http", target: { host: "api.internal", port: 443 } }],
        rules: [
          {
            name: "sql-on-http",
            action: "allow",
            connections: ["api"],
            match: { sql: { statements: ["read"] } },
          },
        ],
      },
    });
    await expect.poll(() => ready("invalid"), { timeout: 15_000 }).toBe("False/Invalid");
    const c = (await getPolicy("invalid")).status?.conditions?.find((x) => x.type === "Ready");
    expect(c?.message).toContain("matches sql but none of its connections speaks postgres");
  });

  it("follows spec changes: observedGeneration and the condition move with the generation", async () => {
    const before = await getPolicy("good");
    await apply(httpPolicy("good", "does-not-exist"));
    await expect.poll(() => ready("good"), { timeout: 15_000 }).toBe("False/SecretNotFound");
    const after = await getPolicy("good");
    expect(after.metadata.generation).toBe((before.metadata.generation ?? 0) + 1);
    expect(after.status?.observedGeneration).toBe(after.metadata.generation);
    const t0 = before.status?.conditions?.find((x) => x.type === "Ready")?.lastTransitionTime;
    const t1 = after.status?.conditions?.find((x) => x.type === "Ready")?.lastTransitionTime;
    expect(t1 && t0 && t1 >= t0).toBe(true);
  });

  it("does not rewrite status that is already right (no write loop)", async () => {
    await controller.idle();
    const rv1 = (await getPolicy("wrong-key")).metadata.resourceVersion;
    await new Promise((r) => setTimeout(r, 1500));
    await controller.idle();
    const rv2 = (await getPolicy("wrong-key")).metadata.resourceVersion;
    expect(rv2).toBe(rv1);
  });
});
