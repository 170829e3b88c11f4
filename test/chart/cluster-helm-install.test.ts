// `helm install` of charts/airlock into the real kube-apiserver (envtest), with the default
// bootstrap certificates, and a pod injected through the chart's own objects: the injector runs in
// this test process with the flags of the installed Deployment and the token of the installed
// ServiceAccount (so exactly the chart's RBAC), makes its CA, writes the installed webhook's
// caBundle, and the installed MutatingWebhookConfiguration, pointed at it by URL (the only change:
// no kubelet runs here to back the Service), sends it the pods.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { V1MutatingWebhookConfiguration, V1Pod, V1Secret } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { type RunningInjector, startInjector } from "../../injector/src/main.ts";
import { connect } from "../envtest/connect.ts";
import {
  analystPolicy,
  applyThirdPartyCrds,
  canI,
  getJson,
  helmCluster,
  injectorArgs,
  kubectlOk,
  podJson,
  pointAt,
  SCOPE_LABEL,
  serviceAccountKubeconfig,
  waitFor,
  warehouseSecret,
} from "./cluster.ts";
import { CHART, ensureHelm, type K8sObject, parseManifests } from "./helm.ts";

const k8s = connect();
const scope = randomBytes(4).toString("hex");
const release = `airlock-${scope}`;
const injectorName = `${release}-injector`;
let releaseNs: string;
let agentsNs: string;
let objectNs: string;
let installOutput: string;
let injector: RunningInjector | undefined;

interface Deployment {
  spec: {
    template: {
      spec: { serviceAccountName: string; containers: { name: string; args: string[]; image: string }[] };
    };
  };
}

async function labelledNamespace(prefix: string, labels: Record<string, string>): Promise<string> {
  const ns = await k8s.createNamespace(prefix);
  const pairs = Object.entries({ [SCOPE_LABEL]: scope, ...labels }).map(([k, v]) => `${k}=${v}`);
  await kubectlOk(k8s, ["label", "namespace", ns, "--overwrite", ...pairs]);
  return ns;
}

/**
 * Objects of crds/ other than CRDs (approvals admission policy, ClusterRoles) have fixed names and
 * other suites `kubectl apply -f crds/` them into this shared cluster. A user who did the same
 * before installing the chart is in the same place: Helm adopts existing objects that carry its
 * ownership metadata (README, "Installing into a cluster").
 */
async function adoptSharedObjects(): Promise<void> {
  const dir = join(CHART, "files", "admission");
  for (const file of ["approvals-vap.yaml", "rbac.yaml"]) {
    let text: string;
    try {
      text = readFileSync(join(dir, file), "utf8");
    } catch {
      continue;
    }
    await kubectlOk(k8s, ["apply", "-f", "-"], text);
    for (const doc of parseAllDocuments(text)) {
      const o = doc.toJS() as K8sObject | null;
      if (!o?.kind) continue;
      const kind = o.kind === "ClusterRole" ? "clusterrole.rbac.authorization.k8s.io" : o.kind.toLowerCase();
      await kubectlOk(k8s, [
        "annotate",
        "--overwrite",
        `${kind}/${o.metadata.name}`,
        `meta.helm.sh/release-name=${release}`,
        `meta.helm.sh/release-namespace=${releaseNs}`,
      ]);
      await kubectlOk(k8s, [
        "label",
        "--overwrite",
        `${kind}/${o.metadata.name}`,
        "app.kubernetes.io/managed-by=Helm",
      ]);
    }
  }
}

function values(): Record<string, unknown> {
  return {
    // Only this file's namespaces: other suites share the API server.
    webhook: { extraNamespaceSelector: [{ key: SCOPE_LABEL, operator: "In", values: [scope] }] },
    // The policy controller watches this file's namespaces only (it writes policy status).
    injector: { watchNamespaces: [agentsNs, objectNs] },
    sidecar: { rbac: { namespaces: [agentsNs] } },
    metrics: {
      serviceMonitor: { enabled: true },
      podMonitor: { enabled: true },
      prometheusRule: { enabled: true },
    },
    dashboards: { enabled: true },
  };
}

async function helmInstall(verb: "install" | "upgrade"): Promise<string> {
  const args: string[] = [verb, release, CHART, "--namespace", releaseNs];
  for (const [k, v] of Object.entries(values())) args.push("--set-json", `${k}=${JSON.stringify(v)}`);
  let r = await helmCluster(k8s, args);
  // Another suite may be re-applying crds/ at this moment (409 on a shared object): retry.
  for (let i = 0; i < 3 && r.code !== 0 && /conflict|has been modified/i.test(r.stderr); i++) {
    await new Promise((res) => setTimeout(res, 500));
    r = await helmCluster(k8s, ["upgrade", "--install", ...args.slice(1)]);
  }
  if (r.code !== 0) throw new Error(`helm ${verb}: ${r.stderr}`);
  return r.stdout;
}

async function webhookConfig(): Promise<V1MutatingWebhookConfiguration> {
  return getJson<V1MutatingWebhookConfiguration>(k8s, ["mutatingwebhookconfiguration", injectorName]);
}

async function createPod(ns: string, name: string, labels: Record<string, string>): Promise<V1Pod> {
  await kubectlOk(k8s, ["apply", "-n", ns, "-f", "-"], podJson(name, labels));
  return getJson<V1Pod>(k8s, ["pod", "-n", ns, name]);
}

beforeAll(async () => {
  await ensureHelm();
  await applyThirdPartyCrds(k8s);
  releaseNs = await labelledNamespace("airlock-system", { "airlock.dev/inject": "enabled" });
  agentsNs = await labelledNamespace("agents", { "airlock.dev/inject": "enabled" });
  objectNs = await labelledNamespace("object-select", {});
  await adoptSharedObjects();
  installOutput = await helmInstall("install");

  await kubectlOk(k8s, ["apply", "-n", agentsNs, "-f", "-"], JSON.stringify(warehouseSecret));
  await kubectlOk(k8s, ["apply", "-n", agentsNs, "-f", "-"], JSON.stringify(analystPolicy));

  // The injector as the installed Deployment runs it, as the installed ServiceAccount.
  const deploy = await getJson<Deployment>(k8s, ["deployment", "-n", releaseNs, injectorName]);
  const pod = deploy.spec.template.spec;
  const container = pod.containers.find((c) => c.name === "injector");
  if (!container) throw new Error("installed Deployment has no injector container");
  const kubeconfig = await serviceAccountKubeconfig(k8s, releaseNs, pod.serviceAccountName);
  injector = await startInjector(injectorArgs(container.args, { kubeconfig, namespace: releaseNs }));
}, 900_000);

afterAll(async () => {
  await injector?.stop();
  await k8s.kubectl(["delete", "mutatingwebhookconfiguration", injectorName, "--ignore-not-found"]);
});

describe("helm install (bootstrap certificates)", () => {
  it("installs every object, monitoring and dashboards included, against the real CRD schemas", async () => {
    const r = await helmCluster(k8s, ["get", "manifest", release, "--namespace", releaseNs]);
    expect(r.code, r.stderr).toBe(0);
    const objs = parseManifests(r.stdout);
    const kinds = new Set(objs.map((o) => o.kind));
    for (const kind of [
      "Deployment",
      "Service",
      "PodDisruptionBudget",
      "MutatingWebhookConfiguration",
      "ValidatingAdmissionPolicy",
      "ValidatingAdmissionPolicyBinding",
      "ServiceMonitor",
      "PodMonitor",
      "PrometheusRule",
      "ConfigMap",
    ])
      expect(kinds, kind).toContain(kind);
    const stored = await getJson<{ items: K8sObject[] }>(k8s, [
      "configmap",
      "-n",
      releaseNs,
      "-l",
      "grafana_dashboard=1",
    ]);
    expect(stored.items).toHaveLength(3);
    await kubectlOk(k8s, ["get", "prometheusrule,servicemonitor,podmonitor", "-n", releaseNs]);
  });

  it("prints the next three commands", () => {
    expect(installOutput).toContain("Next three commands:");
    expect(installOutput).toContain(`1. kubectl label namespace ${agentsNs} airlock.dev/inject=enabled`);
    expect(installOutput).toContain(`2. kubectl apply -n ${agentsNs} -f`);
    expect(installOutput).toContain(`3. kubectl rollout restart deployment -n ${agentsNs}`);
  });

  it("the injector, with only the chart's RBAC, keeps its CA in its Secret and writes the webhook's caBundle", async () => {
    const secret = await getJson<V1Secret>(k8s, ["secret", "-n", releaseNs, `${injectorName}-tls`]);
    expect(Object.keys(secret.data ?? {}).sort()).toEqual(["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    const ca = Buffer.from(secret.data?.["ca.crt"] ?? "", "base64").toString("base64");
    await expect
      .poll(async () => (await webhookConfig()).webhooks?.map((w) => w.clientConfig.caBundle), {
        timeout: 15_000,
      })
      .toEqual([ca, ca, ca]); // the namespace, object and required webhooks
  });

  it("keeps the caBundle through helm upgrade", async () => {
    const before = (await webhookConfig()).webhooks?.[0]?.clientConfig.caBundle;
    expect(before).toBeTruthy();
    await helmInstall("upgrade");
    const after = await webhookConfig();
    expect(after.webhooks?.map((w) => w.clientConfig.caBundle)).toEqual([before, before, before]);
  });

  describe("pods, through the installed webhook", () => {
    beforeAll(async () => {
      if (!injector) throw new Error("injector not running");
      // Point the installed webhooks at the in-process injector; keep everything else.
      const installed = await webhookConfig();
      const { metadata, ...rest } = pointAt(installed, injector.server.url);
      const body = {
        ...rest,
        metadata: { name: metadata?.name, resourceVersion: metadata?.resourceVersion },
      };
      await kubectlOk(k8s, ["replace", "-f", "-"], JSON.stringify(body));
      // The policy controller has synced and judged the policy (status through the chart's RBAC).
      await waitFor(async () => {
        const r = await k8s.kubectl([
          ...["get", "aap", "analyst", "-n", agentsNs],
          ...["-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"],
        ]);
        return r.stdout === "True";
      }, "policy analyst Ready=True");
    });

    it("injects a pod of a labelled namespace, with the chart's image and the policy's Secret for the sidecar", async () => {
      const pod = await createPod(agentsNs, "analyst-0", { app: "analyst" });
      expect(pod.metadata?.annotations?.["airlock.dev/status"]).toBeTruthy();
      const init = pod.spec?.initContainers ?? [];
      expect(init.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
      const deploy = await getJson<Deployment>(k8s, ["deployment", "-n", releaseNs, injectorName]);
      const image = deploy.spec.template.spec.containers[0]?.image;
      for (const c of init) expect(c.image).toBe(image);
      expect(pod.spec?.volumes?.map((v) => v.name)).toContain("airlock-secret-warehouse-readonly");
      expect(pod.spec?.automountServiceAccountToken).toBe(false);
    });

    it("leaves a pod that opts out alone", async () => {
      const pod = await createPod(agentsNs, "opted-out", { "airlock.dev/inject": "false" });
      expect(pod.metadata?.annotations?.["airlock.dev/status"]).toBeUndefined();
      expect(pod.spec?.initContainers ?? []).toEqual([]);
    });

    it("injects a pod labelled airlock.dev/inject=true in a namespace without the label (object webhook)", async () => {
      const plain = await createPod(objectNs, "plain", {});
      expect(plain.spec?.initContainers ?? []).toEqual([]);
      const pod = await createPod(objectNs, "opted-in", { "airlock.dev/inject": "true" });
      expect(pod.spec?.initContainers?.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
    });

    it("never injects in the release's own namespace, even when it is labelled", async () => {
      const pod = await createPod(releaseNs, "in-release-ns", { "airlock.dev/inject": "true" });
      expect(pod.metadata?.annotations?.["airlock.dev/status"]).toBeUndefined();
    });
  });

  describe("RBAC as installed", () => {
    it("sidecars of sidecar.rbac.namespaces read policies and file AccessRequests there, nothing more", async () => {
      const sa = `system:serviceaccount:${agentsNs}:agent`;
      expect(await canI(k8s, sa, ["list", "agentaccesspolicies.airlock.dev"], agentsNs)).toBe(true);
      expect(await canI(k8s, sa, ["create", "accessrequests.airlock.dev"], agentsNs)).toBe(true);
      expect(await canI(k8s, sa, ["get", "secrets"], agentsNs)).toBe(false);
      expect(await canI(k8s, sa, ["update", "agentaccesspolicies.airlock.dev"], agentsNs)).toBe(false);
      const other = `system:serviceaccount:${objectNs}:agent`;
      expect(await canI(k8s, other, ["list", "agentaccesspolicies.airlock.dev"], objectNs)).toBe(false);
    });

    it("the injector reads Secrets' keys only where it watches, and no Secret's data but its own", async () => {
      const deploy = await getJson<Deployment>(k8s, ["deployment", "-n", releaseNs, injectorName]);
      const sa = `system:serviceaccount:${releaseNs}:${deploy.spec.template.spec.serviceAccountName}`;
      expect(await canI(k8s, sa, ["list", "secrets"], agentsNs)).toBe(true);
      expect(await canI(k8s, sa, ["get", "secrets/warehouse-readonly"], agentsNs)).toBe(false);
      expect(await canI(k8s, sa, ["list", "secrets"], "default")).toBe(false);
      expect(await canI(k8s, sa, ["get", `secrets/${injectorName}-tls`], releaseNs)).toBe(true);
      expect(await canI(k8s, sa, ["get", "secrets/other"], releaseNs)).toBe(false);
      expect(
        await canI(k8s, sa, ["update", "agentaccesspolicies.airlock.dev", "--subresource=status"], agentsNs),
      ).toBe(true);
      expect(await canI(k8s, sa, ["update", "agentaccesspolicies.airlock.dev"], agentsNs)).toBe(false);
    });

    it("approvers get the airlock-approver ClusterRole; the admission policy is bound", async () => {
      await kubectlOk(k8s, ["get", "clusterrole", "airlock-approver"]);
      const binding = await getJson<{ spec: { policyName: string } }>(k8s, [
        "validatingadmissionpolicybinding",
        "airlock-accessrequest-decisions",
      ]);
      expect(binding.spec.policyName).toBe("airlock-accessrequest-decisions");
    });
  });
});
