// `helm template` with certificates.mode=certManager, applied with `kubectl apply` to the real
// kube-apiserver (CRDs first; the cert-manager and prometheus-operator CRDs are the real ones), and
// a pod injected through the rendered webhook configuration.
//
// cert-manager's controller and cainjector do not run here (no image, no kubelet): this test does
// their two jobs the way they would, and says so: it issues the serving certificate named by the
// rendered Certificate into the Secret the Deployment mounts (and onto a directory, as the kubelet
// would mount it), and copies the issuing CA into the caBundle of the webhook configuration that
// carries the cert-manager.io/inject-ca-from annotation. Everything else is the chart's.
import { randomBytes } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningInjector, startInjector } from "../../injector/src/main.ts";
import { connect } from "../envtest/connect.ts";
import {
  analystPolicy,
  applyThirdPartyCrds,
  getJson,
  injectorArgs,
  kubectlOk,
  podJson,
  pointAt,
  SCOPE_LABEL,
  serviceAccountKubeconfig,
  waitFor,
  warehouseSecret,
} from "./cluster.ts";
import { find, type K8sObject, render } from "./helm.ts";

const k8s = connect();
const scope = randomBytes(4).toString("hex");
const release = `airlock-cm-${scope}`;
const injectorName = `${release}-injector`;
let releaseNs: string;
let agentsNs: string;
let objects: K8sObject[];
let injector: RunningInjector | undefined;
let certDir: string;

interface Certificate {
  spec: { secretName: string; dnsNames: string[]; issuerRef: { name: string } };
}

async function labelledNamespace(prefix: string, labels: Record<string, string>): Promise<string> {
  const ns = await k8s.createNamespace(prefix);
  const pairs = Object.entries({ [SCOPE_LABEL]: scope, ...labels }).map(([k, v]) => `${k}=${v}`);
  await kubectlOk(k8s, ["label", "namespace", ns, "--overwrite", ...pairs]);
  return ns;
}

/** What cert-manager would write: a kubernetes.io/tls Secret with ca.crt, signed by the issuer. */
async function issue(cert: Certificate): Promise<{ certPem: string; keyPem: string }> {
  // 127.0.0.1 as well: the API server calls the in-process injector by URL.
  const issued = await k8s.issueServingCert([...cert.spec.dnsNames, "127.0.0.1"]);
  const secret = {
    apiVersion: "v1",
    kind: "Secret",
    type: "kubernetes.io/tls",
    metadata: {
      name: cert.spec.secretName,
      namespace: releaseNs,
      annotations: { "cert-manager.io/certificate-name": injectorName },
    },
    stringData: { "tls.crt": issued.certPem, "tls.key": issued.keyPem, "ca.crt": k8s.caPem },
  };
  await kubectlOk(k8s, ["apply", "-f", "-"], JSON.stringify(secret));
  await writeFile(join(certDir, "tls.crt"), issued.certPem);
  await writeFile(join(certDir, "tls.key"), issued.keyPem);
  return issued;
}

beforeAll(async () => {
  await applyThirdPartyCrds(k8s);
  releaseNs = await k8s.createNamespace("airlock-cm");
  agentsNs = await labelledNamespace("agents-cm", { "airlock.dev/inject": "enabled" });
  objects = await render({
    release,
    namespace: releaseNs,
    includeCrds: true,
    kubeVersion: k8s.info.version,
    values: {
      certificates: { mode: "certManager" },
      webhook: { extraNamespaceSelector: [{ key: SCOPE_LABEL, operator: "In", values: [scope] }] },
      injector: { watchNamespaces: [agentsNs] },
      metrics: {
        serviceMonitor: { enabled: true },
        podMonitor: { enabled: true },
        prometheusRule: { enabled: true },
      },
      dashboards: { enabled: true },
    },
  });
  certDir = await mkdtemp(join(tmpdir(), "airlock-cm-tls-"));
}, 900_000);

afterAll(async () => {
  await injector?.stop();
  await k8s.kubectl(["delete", "mutatingwebhookconfiguration", injectorName, "--ignore-not-found"]);
});

describe("helm template (cert-manager) | kubectl apply", () => {
  it("applies the CRDs first, then every other object, against the real schemas", async () => {
    const crds = objects.filter((o) => o.kind === "CustomResourceDefinition");
    expect(crds.map((c) => c.metadata.name).sort()).toEqual([
      "accessrequests.airlock.dev",
      "agentaccesspolicies.airlock.dev",
    ]);
    await kubectlOk(
      k8s,
      ["apply", "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "List", items: crds }),
    );
    await kubectlOk(k8s, [
      "wait",
      "--for=condition=Established",
      "--timeout=60s",
      "crd/agentaccesspolicies.airlock.dev",
    ]);

    // The webhook configuration goes in last, once the injector serves (below).
    const rest = objects.filter(
      (o) => o.kind !== "CustomResourceDefinition" && o.kind !== "MutatingWebhookConfiguration",
    );
    const out = await kubectlOk(
      k8s,
      ["apply", "-f", "-"],
      JSON.stringify({ apiVersion: "v1", kind: "List", items: rest }),
    );
    for (const kind of [
      "certificate",
      "issuer",
      "servicemonitor",
      "podmonitor",
      "prometheusrule",
      "deployment",
    ])
      expect(out, kind).toMatch(new RegExp(`^${kind}\\.[^ ]+/`, "m"));
    const cert = await getJson<Certificate>(k8s, ["certificate", "-n", releaseNs, injectorName]);
    expect(cert.spec.dnsNames).toEqual([
      `${injectorName}.${releaseNs}.svc`,
      `${injectorName}.${releaseNs}.svc.cluster.local`,
    ]);
  });

  it("serves certificates cert-manager would issue and the webhook injects a labelled namespace's pod", async () => {
    const cert = find(objects, "Certificate", injectorName) as unknown as Certificate;
    await issue(cert);

    const deploy = find(objects, "Deployment", injectorName);
    const pod = (
      deploy.spec as { template: { spec: { serviceAccountName: string; containers: { args: string[] }[] } } }
    ).template.spec;
    const kubeconfig = await serviceAccountKubeconfig(k8s, releaseNs, pod.serviceAccountName);
    const args = pod.containers[0]?.args ?? [];
    expect(args).toContain("--cert-dir=/etc/airlock/injector/tls");
    injector = await startInjector(injectorArgs(args, { kubeconfig, namespace: releaseNs, certDir }));

    // cainjector's job: the CA of the Certificate's issuer into caBundle.
    const hook = find(objects, "MutatingWebhookConfiguration", injectorName);
    expect(hook.metadata.annotations?.["cert-manager.io/inject-ca-from"]).toBe(
      `${releaseNs}/${injectorName}`,
    );
    const pointed = pointAt(hook, injector.server.url, Buffer.from(k8s.caPem).toString("base64"));
    await kubectlOk(k8s, ["apply", "-f", "-"], JSON.stringify(pointed));

    await kubectlOk(k8s, ["apply", "-n", agentsNs, "-f", "-"], JSON.stringify(warehouseSecret));
    await kubectlOk(k8s, ["apply", "-n", agentsNs, "-f", "-"], JSON.stringify(analystPolicy));
    await waitFor(async () => {
      const r = await k8s.kubectl(["apply", "-n", agentsNs, "-f", "-"], {
        stdin: podJson("analyst-0", { app: "analyst" }),
      });
      // Refused while the policy cache syncs ("retry"); anything else is a failure.
      if (r.code !== 0 && !/retry/.test(r.stderr)) throw new Error(r.stderr);
      return r.code === 0;
    }, "the injector to accept the pod");
    const injected = await getJson<V1Pod>(k8s, ["pod", "-n", agentsNs, "analyst-0"]);
    expect(injected.metadata?.annotations?.["airlock.dev/status"]).toBeTruthy();
    expect(injected.spec?.initContainers?.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
  });

  it("picks up a renewed certificate without a restart (the Secret volume is updated in place)", async () => {
    if (!injector) throw new Error("injector not running");
    const reloads = async () =>
      (await injector?.server.metrics.registry.getSingleMetricAsString(
        "airlock_injector_tls_reloads_total",
      )) ?? "";
    const before = await reloads();
    await issue(find(objects, "Certificate", injectorName) as unknown as Certificate);
    await expect.poll(reloads, { timeout: 15_000 }).not.toBe(before);
    expect(await reloads()).toMatch(/result="success"} [2-9]/);
    const r = await k8s.kubectl(["apply", "-n", agentsNs, "-f", "-"], {
      stdin: podJson("analyst-1", { app: "analyst" }),
    });
    expect(r.code, r.stderr).toBe(0);
    const pod = await getJson<V1Pod>(k8s, ["pod", "-n", agentsNs, "analyst-1"]);
    expect(pod.spec?.initContainers?.map((c) => c.name)).toEqual(["airlock-init", "airlock-sidecar"]);
  });
});
