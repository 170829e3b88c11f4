// The injector as the real kube-apiserver calls it: a MutatingWebhookConfiguration pointing at
// the webhook running in this test process (TLS from the cluster CA), pods created with kubectl,
// assertions on what the API server stored. No kubelet: pods never start.
import { writeFileSync } from "node:fs";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apply as applyObject, connect } from "../envtest/connect.ts";
import {
  applyCrds,
  getPod,
  installWebhook,
  podYaml,
  scopedNamespace,
  scopeId,
  startTestInjector,
  type TestInjector,
  waitFor,
} from "./harness.ts";

const k8s = connect();
const scope = scopeId();
const webhookName = `airlock-injector-webhook-test-${scope}`;
let injector: TestInjector;
let nsOn: string;
let nsOff: string;
let nsRequired: string;

const policy = (ns: string) => ({
  apiVersion: "airlock.dev/v1alpha1",
  kind: "AgentAccessPolicy",
  metadata: { name: "analyst", namespace: ns },
  spec: {
    podSelector: { matchLabels: { app: "analyst" } },
    connections: [
      {
        name: "warehouse",
        protocol: "postgres",
        target: { host: "warehouse.db.internal", port: 5432 },
        credentials: { secretRef: { name: "warehouse-readonly" } },
      },
      {
        name: "tickets",
        protocol: "http",
        target: { host: "tickets.internal", port: 443 },
        credentials: { secretRef: { name: "tickets-token" } },
      },
    ],
    rules: [
      { name: "read", action: "allow", match: { sql: { statements: ["read"] } }, connections: ["warehouse"] },
    ],
  },
});

const secret = (ns: string, name: string, data: Record<string, string>) => ({
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name, namespace: ns },
  stringData: data,
});

async function apply(ns: string, manifest: string) {
  return k8s.kubectl(["apply", "-n", ns, "-f", "-"], { stdin: manifest });
}

function mountsOf(c: V1Container | undefined): string[] {
  return (c?.volumeMounts ?? []).map((m) => m.mountPath);
}

beforeAll(async () => {
  await applyCrds(k8s);
  nsOn = await scopedNamespace(k8s, "inject-on", scope, { "airlock.dev/inject": "enabled" });
  nsOff = await scopedNamespace(k8s, "inject-off", scope);
  nsRequired = await scopedNamespace(k8s, "inject-required", scope, { "airlock.dev/inject": "required" });
  const objects = {
    apiVersion: "v1",
    kind: "List",
    items: [
      secret(nsOn, "warehouse-readonly", { username: "agent", password: "s3cret" }),
      secret(nsOn, "tickets-token", { token: "t0ken" }),
      policy(nsOn),
    ],
  };
  await applyObject(k8s, objects);
  injector = await startTestInjector(k8s, [nsOn, nsOff, nsRequired]);
  // The webhook consults the controller's cache: wait until it has the policy.
  await waitFor(() => injector.controller.policies(nsOn).length === 1, "the policy in the cache");
  await installWebhook(k8s, { name: webhookName, url: injector.server.url, caPem: injector.caPem, scope });
});

afterAll(async () => {
  await injector?.stop();
  await k8s.kubectl(["delete", "mutatingwebhookconfiguration", webhookName, "--ignore-not-found"]);
});

describe("injection through the real API server", () => {
  let pod: V1Pod;

  it("injects an agent pod in a labelled namespace, as stored by the API server", async () => {
    const r = await apply(nsOn, podYaml("analyst", { labels: { app: "analyst" } }));
    expect(r.code, r.stderr).toBe(0);
    pod = await getPod(k8s, nsOn, "analyst");
    // AIRLOCK_INJECTOR_DUMP=FILE keeps the stored pod, e.g. for documentation.
    if (process.env.AIRLOCK_INJECTOR_DUMP)
      writeFileSync(
        process.env.AIRLOCK_INJECTOR_DUMP,
        (await k8s.kubectl(["get", "pod", "-n", nsOn, "analyst", "-o", "yaml"])).stdout,
      );
    const spec = pod.spec;
    expect(spec?.initContainers?.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
    expect(spec?.automountServiceAccountToken).toBe(false);
    const status = JSON.parse(pod.metadata?.annotations?.["airlock.dev/status"] ?? "{}") as Record<
      string,
      unknown
    >;
    expect(status).toMatchObject({
      containers: ["airlock-init", "airlock-sidecar"],
      secrets: ["tickets-token", "warehouse-readonly"],
      policies: ["analyst"],
    });
    expect(pod.metadata?.annotations?.["kubectl.kubernetes.io/default-container"]).toBe("agent");
  });

  it("runs the sidecar as a native sidecar with probes, the proxy UID and no capabilities", () => {
    const sidecar = pod.spec?.initContainers?.[1];
    expect(sidecar?.restartPolicy).toBe("Always");
    expect(sidecar?.image).toBe("ghcr.io/airlock-dev/airlock:envtest");
    expect(sidecar?.command).toEqual(["airlock-sidecar"]);
    expect(sidecar?.startupProbe?.httpGet).toMatchObject({ path: "/readyz", port: 15990 });
    expect(sidecar?.startupProbe?.periodSeconds).toBe(1);
    expect(sidecar?.readinessProbe?.httpGet?.path).toBe("/readyz");
    expect(sidecar?.lifecycle?.preStop?.exec?.command).toEqual(["airlock-sidecar", "drain"]);
    expect(sidecar?.securityContext).toMatchObject({
      runAsUser: 1717,
      runAsGroup: 1717,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
    });
    const init = pod.spec?.initContainers?.[0];
    expect(init?.securityContext?.capabilities).toEqual({ add: ["NET_ADMIN", "NET_RAW"], drop: ["ALL"] });
    expect(init?.args).toEqual(["--proxy-uid", "1717", "--proxy-gid", "1717", "--redirect-port", "15900"]);
  });

  it("mounts Secrets and the service-account token only into the sidecar", () => {
    const sidecar = pod.spec?.initContainers?.[1];
    expect(mountsOf(sidecar)).toEqual([
      "/etc/airlock/podinfo",
      "/var/run/secrets/kubernetes.io/serviceaccount",
      "/tmp",
      "/var/run/airlock/trust",
      "/etc/airlock/secrets/tickets-token",
      "/etc/airlock/secrets/warehouse-readonly",
    ]);
    const agent = pod.spec?.containers[0];
    // Only the trust bundle, read-only.
    expect(agent?.volumeMounts ?? []).toEqual([
      { name: "airlock-trust", mountPath: "/var/run/airlock/trust", readOnly: true },
    ]);
    const volumes = Object.fromEntries((pod.spec?.volumes ?? []).map((v) => [v.name, v]));
    expect(volumes["airlock-secret-warehouse-readonly"]?.secret?.secretName).toBe("warehouse-readonly");
    const token = volumes["airlock-token"]?.projected?.sources ?? [];
    expect(token[0]?.serviceAccountToken).toMatchObject({ path: "token", expirationSeconds: 3600 });
    expect(token[1]?.configMap?.name).toBe("kube-root-ca.crt");
  });

  it("gives the agent the proxy env and drops SETUID/SETGID/NET_ADMIN/NET_RAW", () => {
    const agent = pod.spec?.containers[0];
    const env = Object.fromEntries((agent?.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      HTTP_PROXY: "http://127.0.0.1:15901",
      HTTPS_PROXY: "http://127.0.0.1:15901",
      NO_PROXY: "127.0.0.1,localhost",
      no_proxy: "127.0.0.1,localhost",
    });
    expect(agent?.securityContext?.capabilities?.drop).toEqual(["NET_ADMIN", "NET_RAW", "SETUID", "SETGID"]);
    expect(agent?.securityContext?.allowPrivilegeEscalation).toBe(false);
  });

  it("injects pods created from generateName", async () => {
    const r = await k8s.kubectl(["create", "-n", nsOn, "-o", "json", "-f", "-"], {
      stdin: podYaml("analyst-gen", { labels: { app: "analyst" }, generateName: true }),
    });
    expect(r.code, r.stderr).toBe(0);
    const created = JSON.parse(r.stdout) as V1Pod;
    expect(created.metadata?.name).toMatch(/^analyst-gen-/);
    expect(created.spec?.initContainers?.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
  });

  it("puts the sidecar before the pod's own init containers, which keep their settings", async () => {
    const r = await apply(
      nsOn,
      podYaml("with-init", {
        labels: { app: "analyst" },
        spec: {
          initContainers: [{ name: "migrate", image: "busybox:1.36", env: [{ name: "STEP", value: "1" }] }],
          containers: [{ name: "agent", image: "busybox:1.36" }],
        },
      }),
    );
    expect(r.code, r.stderr).toBe(0);
    const stored = await getPod(k8s, nsOn, "with-init");
    const names = stored.spec?.initContainers?.map((c) => c.name);
    expect(names).toEqual(["airlock-init", "airlock-sidecar", "migrate"]);
    const migrate = stored.spec?.initContainers?.[2];
    expect(migrate?.image).toBe("busybox:1.36");
    expect(migrate?.env).toContainEqual({ name: "STEP", value: "1" });
  });

  it("leaves pods in unlabelled namespaces untouched", async () => {
    const r = await apply(nsOff, podYaml("plain"));
    expect(r.code, r.stderr).toBe(0);
    const stored = await getPod(k8s, nsOff, "plain");
    expect(stored.spec?.initContainers).toBeUndefined();
    expect(stored.metadata?.annotations?.["airlock.dev/status"]).toBeUndefined();
  });

  it("injects a pod labelled airlock.dev/inject=true in an unlabelled namespace", async () => {
    const r = await apply(nsOff, podYaml("opted-in", { labels: { "airlock.dev/inject": "true" } }));
    expect(r.code, r.stderr).toBe(0);
    // No policy selects it: the API server passes the webhook's warning on to kubectl.
    expect(r.stderr).toContain("no AgentAccessPolicy");
    const stored = await getPod(k8s, nsOff, "opted-in");
    expect(stored.spec?.initContainers?.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
  });

  it("leaves opted-out and hostNetwork pods untouched", async () => {
    const optedOut = await apply(nsOn, podYaml("opted-out", { labels: { "airlock.dev/inject": "false" } }));
    expect(optedOut.code, optedOut.stderr).toBe(0);
    expect((await getPod(k8s, nsOn, "opted-out")).spec?.initContainers).toBeUndefined();

    const host = await apply(
      nsOn,
      podYaml("host", {
        spec: { hostNetwork: true, containers: [{ name: "agent", image: "busybox:1.36" }] },
      }),
    );
    expect(host.code, host.stderr).toBe(0);
    expect((await getPod(k8s, nsOn, "host")).spec?.initContainers).toBeUndefined();
  });

  it("refuses a pod whose agent runs as the proxy UID, with the admission message", async () => {
    const r = await apply(
      nsOn,
      podYaml("sneaky", {
        spec: {
          containers: [{ name: "agent", image: "busybox:1.36", securityContext: { runAsUser: 1717 } }],
        },
      }),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("denied the request");
    expect(r.stderr).toContain("container agent runs as UID 1717, the proxy UID");
  });

  it("leaves a re-applied injected pod as it is (idempotent)", async () => {
    const again = await apply(nsOn, podYaml("analyst", { labels: { app: "analyst" } }));
    expect(again.code, again.stderr).toBe(0);
    const stored = await getPod(k8s, nsOn, "analyst");
    expect(stored.spec?.initContainers?.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
  });

  it("counts admissions by result in /metrics", async () => {
    const text = await injector.server.metrics.registry.metrics();
    expect(text).toMatch(/airlock_injector_admissions_total\{result="injected"\} [1-9]/);
    expect(text).toMatch(/airlock_injector_admissions_total\{result="refused"\} [1-9]/);
    expect(text).toContain("airlock_injector_admission_duration_seconds_bucket");
  });

  describe("in a namespace labelled airlock.dev/inject=required", () => {
    it.each([
      [
        "a hostNetwork pod",
        podYaml("host", {
          spec: { hostNetwork: true, containers: [{ name: "agent", image: "busybox:1.36" }] },
        }),
        "hostNetwork pod: capture would rewrite the node's own network rules, and namespace",
      ],
      [
        "a pod labelled airlock.dev/inject=false (which the webhook of enabled namespaces never sees)",
        podYaml("opted-out", { labels: { "airlock.dev/inject": "false" } }),
        "pod label airlock.dev/inject=false, and namespace",
      ],
      [
        "a pod carrying airlock.dev/status without Airlock's containers",
        podYaml("forged", { annotations: { "airlock.dev/status": "{}" } }),
        "it carries airlock.dev/status but init container 1 is not airlock-init, and namespace",
      ],
    ])("refuses %s instead of admitting it unguarded", async (_label, manifest, message) => {
      const r = await apply(nsRequired, manifest);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("denied the request");
      expect(r.stderr).toContain(message);
      expect(r.stderr).toContain(`requires injection (namespace label airlock.dev/inject=required)`);
      const name = (JSON.parse(manifest) as { metadata: { name: string } }).metadata.name;
      expect((await k8s.kubectl(["get", "pod", "-n", nsRequired, name])).code).not.toBe(0);
    });

    it("injects an ordinary agent pod", async () => {
      const r = await apply(nsRequired, podYaml("agent"));
      expect(r.code, r.stderr).toBe(0);
      const stored = await getPod(k8s, nsRequired, "agent");
      expect(stored.spec?.initContainers?.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
    });

    it("admits an injected pod created again from its stored manifest (API defaults included), as is", async () => {
      const stored = await getPod(k8s, nsRequired, "agent");
      const again = {
        ...stored,
        metadata: {
          name: "agent-again",
          labels: stored.metadata?.labels,
          annotations: stored.metadata?.annotations,
        },
      };
      delete again.status;
      const r = await apply(nsRequired, JSON.stringify(again));
      expect(r.code, r.stderr).toBe(0);
      const copy = await getPod(k8s, nsRequired, "agent-again");
      expect(copy.spec?.initContainers).toEqual(stored.spec?.initContainers);
    });
  });

  it("refuses agent pods while the injector is down (failurePolicy Fail)", async () => {
    await injector.stop();
    const r = await apply(nsOn, podYaml("while-down", { labels: { app: "analyst" } }));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/failed calling webhook/);
    const gone = await k8s.kubectl(["get", "pod", "-n", nsOn, "while-down"]);
    expect(gone.code).not.toBe(0);
    // Namespaces the webhook does not select are not affected.
    const other = await apply(nsOff, podYaml("still-fine"));
    expect(other.code, other.stderr).toBe(0);
  });
});
