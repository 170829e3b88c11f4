// The Helm chart as helm sees it: `helm lint`, `helm template` for the default, cert-manager and
// everything-on values, the objects' shape against the injector's own definitions, least-privilege
// RBAC, the copies of crds/, dashboards as ConfigMaps, and values.schema.json refusing bad values.
// helm is built from the Go module proxy by test/harness/helm.sh (cached); no cluster is needed
// here (cluster-*.test.ts apply the chart to the real kube-apiserver).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { V1Pod } from "@kubernetes/client-node";
import { beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { defaultConfig, defaultImage, packageVersion } from "../../injector/src/config.ts";
import { injectPod } from "../../injector/src/inject.ts";
import { SYSTEM_NAMESPACES } from "../../injector/src/names.ts";
import { webhookConfiguration } from "../../injector/src/webhook-config.ts";
import { CHART, ensureHelm, find, helm, type K8sObject, kinds, ROOT, render, template } from "./helm.ts";

// Typed views of the parts the assertions read.
interface Rule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}
interface Container {
  name: string;
  image: string;
  args: string[];
  ports: { name: string; containerPort: number }[];
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: Record<string, unknown>;
  readinessProbe?: { httpGet: { path: string; port: string } };
  livenessProbe?: { httpGet: { path: string; port: string } };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  affinity?: {
    podAntiAffinity?: {
      preferredDuringSchedulingIgnoredDuringExecution?: unknown[];
      requiredDuringSchedulingIgnoredDuringExecution?: unknown[];
    };
  };
  securityContext?: Record<string, unknown>;
  volumes?: { name: string; secret?: { secretName: string } }[];
  serviceAccountName: string;
}
const spec = <T>(o: K8sObject) => o.spec as T;
const podSpec = (deploy: K8sObject) => spec<{ template: { spec: PodSpec } }>(deploy).template.spec;
const injectorContainer = (deploy: K8sObject) => {
  const c = podSpec(deploy).containers.find((x) => x.name === "injector");
  if (!c) throw new Error("no injector container");
  return c;
};
const rulesOf = (o: K8sObject) => (o.rules as Rule[] | undefined) ?? [];

const EVERYTHING = {
  metrics: {
    serviceMonitor: { enabled: true },
    podMonitor: { enabled: true },
    prometheusRule: { enabled: true },
  },
  dashboards: { enabled: true },
  sidecar: { rbac: { namespaces: ["agents"] } },
};

let defaults: K8sObject[];

beforeAll(async () => {
  await ensureHelm();
  defaults = await render();
}, 900_000);

describe("helm lint", () => {
  for (const [name, values] of [
    ["default values", {}],
    ["cert-manager", { certificates: { mode: "certManager" } }],
    ["everything on", { ...EVERYTHING, injector: { watchNamespaces: ["agents"], antiAffinity: "hard" } }],
  ] as const) {
    it(`is clean with ${name} (--strict: warnings fail)`, async () => {
      const args = ["lint", CHART, "--strict", "--namespace", "airlock-system"];
      for (const [k, v] of Object.entries(flatten(values)))
        args.push("--set-json", `${k}=${JSON.stringify(v)}`);
      const r = await helm(args);
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout).toContain("1 chart(s) linted, 0 chart(s) failed");
      expect(r.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
    });
  }
});

function flatten(o: Record<string, unknown>, prefix = ""): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v))
      Object.assign(out, flatten(v as Record<string, unknown>, key));
    else out[key] = v;
  }
  return out;
}

describe("helm template with default values", () => {
  it("renders the injector, its webhook, RBAC and the approvals admission policy; nothing optional", () => {
    expect(kinds(defaults)).toEqual([
      "ClusterRole",
      "ClusterRoleBinding",
      "Deployment",
      "MutatingWebhookConfiguration",
      "PodDisruptionBudget",
      "Role",
      "RoleBinding",
      "Service",
      "ServiceAccount",
      "ValidatingAdmissionPolicy",
      "ValidatingAdmissionPolicyBinding",
    ]);
  });

  it("renders exactly the MutatingWebhookConfiguration of injector/src/webhook-config.ts", () => {
    const rendered = find(defaults, "MutatingWebhookConfiguration", "airlock-injector");
    const expected = webhookConfiguration({
      name: "airlock-injector",
      service: { namespace: "airlock-system", name: "airlock-injector" },
    });
    expect(rendered.webhooks).toEqual(expected.webhooks);
  });

  it("excludes the release's own namespace, whatever it is called, and extra namespaces", async () => {
    const objs = await render({
      namespace: "platform",
      values: { webhook: { excludeNamespaces: ["batch"] } },
    });
    const rendered = find(objs, "MutatingWebhookConfiguration");
    const expected = webhookConfiguration({
      name: "airlock-injector",
      service: { namespace: "platform", name: "airlock-injector" },
      systemNamespaces: ["kube-system", "kube-public", "kube-node-lease", "platform", "batch"],
    });
    expect(rendered.webhooks).toEqual(expected.webhooks);
    // The injector's handler skips these by name too.
    expect(SYSTEM_NAMESPACES).toEqual(
      expect.arrayContaining(["kube-system", "kube-public", "kube-node-lease"]),
    );
  });

  it("injects the chart's image, which is the injector's default for this version", () => {
    const c = injectorContainer(find(defaults, "Deployment"));
    expect(c.image).toBe(defaultImage());
    expect(c.args).toContain(`--image=${defaultImage()}`);
    expect(parse(readFileSync(join(CHART, "Chart.yaml"), "utf8")).appVersion).toBe(packageVersion());
  });

  it("pins the image by digest when one is given", async () => {
    const digest = `sha256:${"a".repeat(64)}`;
    const c = injectorContainer(find(await render({ values: { image: { digest } } }), "Deployment"));
    expect(c.image).toBe(`ghcr.io/airlock-dev/airlock@${digest}`);
    expect(c.args).toContain(`--image=ghcr.io/airlock-dev/airlock@${digest}`);
  });

  it("runs 2 replicas spread across nodes, with probes, resources and a locked-down container", () => {
    const deploy = find(defaults, "Deployment", "airlock-injector");
    expect(spec<{ replicas: number }>(deploy).replicas).toBe(2);
    const pod = podSpec(deploy);
    expect(pod.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution).toHaveLength(1);
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1717 });
    const c = injectorContainer(deploy);
    expect(c.readinessProbe?.httpGet).toEqual({ path: "/readyz", port: "http-metrics" });
    expect(c.livenessProbe?.httpGet).toEqual({ path: "/healthz", port: "http-metrics" });
    expect(c.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
    expect(c.resources.limits).toMatchObject({ memory: expect.any(String) });
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(c.args).toEqual(
      expect.arrayContaining([
        "--bootstrap-tls",
        "--tls-secret=airlock-injector-tls",
        "--webhook-config-name=airlock-injector",
        "--service=airlock-injector",
      ]),
    );
    expect(c.ports.map((p) => [p.name, p.containerPort])).toEqual([
      ["https-webhook", 9443],
      ["http-metrics", 15991],
    ]);
  });

  it("hard anti-affinity on request", async () => {
    const deploy = find(await render({ values: { injector: { antiAffinity: "hard" } } }), "Deployment");
    expect(
      podSpec(deploy).affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution,
    ).toHaveLength(1);
  });

  it("keeps one replica through disruptions; the Service and PDB select the injector pods", () => {
    const deploy = find(defaults, "Deployment");
    const podLabels = spec<{ template: { metadata: { labels: Record<string, string> } } }>(deploy).template
      .metadata.labels;
    const pdb = find(defaults, "PodDisruptionBudget");
    expect(spec<{ minAvailable: number }>(pdb).minAvailable).toBe(1);
    const pdbSelector = spec<{ selector: { matchLabels: Record<string, string> } }>(pdb).selector.matchLabels;
    expect(podLabels).toMatchObject(pdbSelector);
    const svc = spec<{
      selector: Record<string, string>;
      ports: { name: string; port: number; targetPort: string }[];
    }>(find(defaults, "Service"));
    expect(podLabels).toMatchObject(svc.selector);
    const containerPorts = injectorContainer(deploy).ports.map((p) => p.name);
    for (const p of svc.ports) expect(containerPorts).toContain(p.targetPort);
    expect(svc.ports.find((p) => p.name === "https-webhook")?.port).toBe(443);
  });

  it("grants least privilege: no wildcards, Secrets read by name only, its own webhook configuration only", () => {
    const roles = defaults.filter((o) => o.kind === "ClusterRole" || o.kind === "Role");
    for (const role of roles)
      for (const rule of rulesOf(role))
        for (const field of [rule.apiGroups, rule.resources, rule.verbs])
          expect(field ?? [], `${role.kind}/${role.metadata.name}`).not.toContain("*");

    const injectorRules = roles
      .filter((r) => r.metadata.name.startsWith("airlock-injector"))
      .flatMap(rulesOf);
    const secretRules = injectorRules.filter((r) => r.resources?.includes("secrets"));
    for (const r of secretRules) {
      // Reading a Secret's data (get) is allowed only for its own TLS Secret, by name.
      if (r.verbs.includes("get") || r.verbs.includes("update"))
        expect(r.resourceNames).toEqual(["airlock-injector-tls"]);
    }
    const webhookRule = injectorRules.find((r) => r.resources?.includes("mutatingwebhookconfigurations"));
    expect(webhookRule).toEqual({
      apiGroups: ["admissionregistration.k8s.io"],
      resources: ["mutatingwebhookconfigurations"],
      resourceNames: ["airlock-injector"],
      verbs: ["get", "update"],
    });
    // The bootstrap Role lives in the release namespace only.
    const bootstrapRole = find(defaults, "Role", "airlock-injector-bootstrap-tls");
    expect(bootstrapRole.metadata.namespace).toBe("airlock-system");
  });

  it("ships the approvals roles: airlock-approver decides through status only", () => {
    const approver = find(defaults, "ClusterRole", "airlock-approver");
    const rules = rulesOf(approver);
    const writes = rules.filter((r) =>
      r.verbs.some((v) => ["create", "update", "patch", "delete"].includes(v)),
    );
    expect(writes.flatMap((r) => r.resources)).toEqual(["accessrequests/status"]);
    find(defaults, "ClusterRole", "airlock-sidecar");
  });
});

describe("helm template with injector.watchNamespaces", () => {
  it("grants the injector Roles in those namespaces only, no cluster-wide read of Secrets", async () => {
    const objs = await render({ values: { injector: { watchNamespaces: ["team-a", "team-b"] } } });
    const roles = objs.filter((o) => o.kind === "Role" && o.metadata.name === "airlock-injector");
    expect(roles.map((r) => r.metadata.namespace)).toEqual(["team-a", "team-b"]);
    const clusterRoles = objs.filter(
      (o) => o.kind === "ClusterRole" && o.metadata.name.startsWith("airlock-injector"),
    );
    for (const r of clusterRoles) expect(rulesOf(r).flatMap((x) => x.resources)).not.toContain("secrets");
    expect(injectorContainer(find(objs, "Deployment")).args).toContain("--watch-namespaces=team-a,team-b");
  });
});

describe("helm template with certificates.mode=certManager", () => {
  let objs: K8sObject[];
  beforeAll(async () => {
    objs = await render({ values: { certificates: { mode: "certManager" } } });
  });

  it("issues the serving certificate through a self-signed CA chain and mounts it", () => {
    const cert = find(objs, "Certificate", "airlock-injector");
    expect(spec<{ dnsNames: string[]; secretName: string; issuerRef: { name: string } }>(cert)).toMatchObject(
      {
        dnsNames: [
          "airlock-injector.airlock-system.svc",
          "airlock-injector.airlock-system.svc.cluster.local",
        ],
        secretName: "airlock-injector-tls",
        issuerRef: { name: "airlock-injector-ca" },
      },
    );
    find(objs, "Issuer", "airlock-injector-selfsigned");
    find(objs, "Issuer", "airlock-injector-ca");
    find(objs, "Certificate", "airlock-injector-ca");
    const deploy = find(objs, "Deployment");
    const c = injectorContainer(deploy);
    expect(c.args).toContain("--cert-dir=/etc/airlock/injector/tls");
    expect(c.args).not.toContain("--bootstrap-tls");
    expect(c.volumeMounts).toContainEqual(
      expect.objectContaining({ mountPath: "/etc/airlock/injector/tls" }),
    );
    expect(podSpec(deploy).volumes).toContainEqual({
      name: "tls",
      secret: { secretName: "airlock-injector-tls" },
    });
  });

  it("lets cainjector fill the caBundle and drops the bootstrap permissions", () => {
    const hook = find(objs, "MutatingWebhookConfiguration");
    expect(hook.metadata.annotations?.["cert-manager.io/inject-ca-from"]).toBe(
      "airlock-system/airlock-injector",
    );
    expect(objs.some((o) => o.metadata.name.endsWith("bootstrap-tls"))).toBe(false);
    expect(objs.some((o) => o.metadata.name.endsWith("webhook-ca"))).toBe(false);
  });

  it("uses a given issuer instead of its own chain", async () => {
    const given = await render({
      values: {
        certificates: {
          mode: "certManager",
          certManager: { issuerRef: { name: "corp-ca", kind: "ClusterIssuer" } },
        },
      },
    });
    expect(given.filter((o) => o.kind === "Issuer")).toEqual([]);
    expect(spec<{ issuerRef: unknown }>(find(given, "Certificate")).issuerRef).toEqual({
      name: "corp-ca",
      kind: "ClusterIssuer",
      group: "cert-manager.io",
    });
  });
});

describe("monitoring objects, behind values", () => {
  let objs: K8sObject[];
  beforeAll(async () => {
    objs = await render({ values: EVERYTHING });
  });

  it("a ServiceMonitor for the injector's metrics port", () => {
    const sm = spec<{
      selector: { matchLabels: Record<string, string> };
      endpoints: { port: string; path: string }[];
    }>(find(objs, "ServiceMonitor"));
    const svc = find(objs, "Service");
    expect(svc.metadata.labels).toMatchObject(sm.selector.matchLabels);
    expect(sm.endpoints).toEqual([expect.objectContaining({ port: "http-metrics", path: "/metrics" })]);
  });

  it("a PodMonitor for the port the injector gives every sidecar", () => {
    const pm = spec<{ podMetricsEndpoints: { port: string }[]; namespaceSelector: unknown }>(
      find(objs, "PodMonitor"),
    );
    const pod: V1Pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "agent" },
      spec: { containers: [{ name: "agent", image: "agent" }] },
    };
    const injected = injectPod(pod, { config: defaultConfig(), namespace: "agents", policies: [] });
    if (injected.kind !== "injected") throw new Error(`not injected: ${injected.kind}`);
    const sidecar = injected.pod.spec?.initContainers?.find((c) => c.name === "airlock-sidecar");
    const portNames = (sidecar?.ports ?? []).map((p) => p.name);
    expect(portNames).toContain(pm.podMetricsEndpoints[0]?.port);
    expect(pm.namespaceSelector).toEqual({ any: true });
  });

  it("a PrometheusRule with the four alerts the issue asks for, plus certificate reloads and pod CA renewal", () => {
    const rule = spec<{ groups: { rules: { alert: string; expr: string; for?: string }[] }[] }>(
      find(objs, "PrometheusRule"),
    );
    const alerts = rule.groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(alerts).toEqual([
      "AirlockApprovalPendingTooLong",
      "AirlockDenyRateSpike",
      "AirlockSidecarPolicyStale",
      "AirlockPodCaNotRenewed",
      "AirlockInjectorErrors",
      "AirlockInjectorCertificateReloadFailing",
    ]);
    const stale = rule.groups.flatMap((g) => g.rules).find((r) => r.alert === "AirlockSidecarPolicyStale");
    expect(stale?.expr).toContain("airlock_policy_source_up");
    expect(stale?.expr).toContain("airlock_policy_last_success_timestamp_seconds");
  });

  it('Grafana dashboards as ConfigMaps labelled grafana_dashboard: "1", byte for byte the JSON files', () => {
    const files = readdirSync(join(CHART, "dashboards")).filter((f) => f.endsWith(".json"));
    expect(files.sort()).toEqual(["approvals.json", "injector.json", "overview.json"]);
    const maps = objs.filter((o) => o.kind === "ConfigMap");
    expect(maps).toHaveLength(files.length);
    for (const file of files) {
      const cm = maps.find((m) =>
        Object.keys((m.data as Record<string, string>) ?? {}).includes(`airlock-${file}`),
      );
      if (!cm) throw new Error(`no ConfigMap carries ${file}`);
      expect(cm.metadata.labels?.grafana_dashboard).toBe("1");
      const text = (cm.data as Record<string, string>)[`airlock-${file}`];
      expect(text?.trimEnd()).toBe(readFileSync(join(CHART, "dashboards", file), "utf8").trimEnd());
    }
  });

  it("RoleBindings for the sidecars of the listed namespaces", () => {
    const rb = objs.find((o) => o.kind === "RoleBinding" && o.metadata.namespace === "agents");
    expect(rb).toMatchObject({
      roleRef: { kind: "ClusterRole", name: "airlock-sidecar" },
      subjects: [{ kind: "Group", name: "system:serviceaccounts:agents" }],
    });
  });
});

describe("dashboards", () => {
  const files = readdirSync(join(CHART, "dashboards")).filter((f) => f.endsWith(".json"));
  for (const file of files) {
    it(`${file}: valid Grafana JSON templated by namespace${file === "injector.json" ? "" : " and connection"}`, () => {
      const d = JSON.parse(readFileSync(join(CHART, "dashboards", file), "utf8")) as {
        uid: string;
        title: string;
        templating: { list: { name: string; allValue?: string }[] };
        panels: { type: string; title: string; targets?: { expr: string }[] }[];
      };
      expect(d.uid).toMatch(/^airlock-/);
      expect(d.title).toMatch(/^Airlock \/ /);
      const vars = d.templating.list.map((v) => v.name);
      expect(vars).toContain("namespace");
      expect(vars).toContain("datasource");
      if (file !== "injector.json") expect(vars).toContain("connection");
      const panels = d.panels.filter((p) => p.type !== "row");
      expect(panels.length).toBeGreaterThanOrEqual(6);
      for (const p of panels) {
        expect(p.targets?.length, p.title).toBeGreaterThan(0);
        for (const t of p.targets ?? []) {
          expect(t.expr, p.title).toContain("$namespace");
          expect(t.expr, p.title).toMatch(/airlock_/);
        }
      }
    });
  }
});

describe("copies of crds/", () => {
  const kindsIn = (text: string) =>
    parseAllDocuments(text)
      .map((d) => (d.toJS() as { kind?: string } | null)?.kind)
      .filter(Boolean);
  const repo = readdirSync(join(ROOT, "crds")).filter((f) => /\.ya?ml$/.test(f));
  const crdFiles = repo.filter((f) =>
    kindsIn(readFileSync(join(ROOT, "crds", f), "utf8")).every((k) => k === "CustomResourceDefinition"),
  );
  const otherFiles = repo.filter((f) => !crdFiles.includes(f));
  const hint = "run charts/airlock/sync-crds.sh after changing crds/";

  it("chart crds/ holds exactly the repository's CustomResourceDefinitions", () => {
    const chartFiles = readdirSync(join(CHART, "crds")).sort();
    expect(chartFiles, hint).toEqual(crdFiles.sort());
    for (const f of crdFiles)
      expect(readFileSync(join(CHART, "crds", f), "utf8"), `${f}: ${hint}`).toBe(
        readFileSync(join(ROOT, "crds", f), "utf8"),
      );
  });

  it("files/admission holds the repository's other objects (admission policy, RBAC)", () => {
    const chartFiles = readdirSync(join(CHART, "files", "admission")).sort();
    expect(chartFiles, hint).toEqual(otherFiles.sort());
    for (const f of otherFiles)
      expect(readFileSync(join(CHART, "files", "admission", f), "utf8"), `${f}: ${hint}`).toBe(
        readFileSync(join(ROOT, "crds", f), "utf8"),
      );
  });

  it("renders each of those objects unchanged but for the chart's labels", () => {
    for (const f of otherFiles) {
      for (const doc of parseAllDocuments(readFileSync(join(ROOT, "crds", f), "utf8"))) {
        const obj = doc.toJS() as K8sObject | null;
        if (!obj?.kind) continue;
        const rendered = find(defaults, obj.kind, obj.metadata.name);
        const { metadata: rm, ...rest } = rendered;
        const { metadata: om, ...orig } = obj;
        expect(rest, `${obj.kind}/${obj.metadata.name}`).toEqual(orig);
        expect(rm.labels).toMatchObject({ ...om.labels, "app.kubernetes.io/managed-by": "Helm" });
      }
    }
  });

  it("leaves the admission policy out when approvals.admissionPolicy.enabled=false", async () => {
    const objs = await render({ values: { approvals: { admissionPolicy: { enabled: false } } } });
    expect(objs.filter((o) => o.kind.startsWith("ValidatingAdmissionPolicy"))).toEqual([]);
  });
});

describe("helm template with vault.tokenReviewer.enabled", () => {
  it("a service account bound to system:auth-delegator only, with no token mounted anywhere", async () => {
    const objs = await render({ values: { vault: { tokenReviewer: { enabled: true } } } });
    const sa = objs.find((o) => o.kind === "ServiceAccount" && o.metadata.name === "airlock-vault-reviewer");
    expect(sa).toMatchObject({ automountServiceAccountToken: false });
    const bindings = objs.filter(
      (o) =>
        (o.kind === "ClusterRoleBinding" || o.kind === "RoleBinding") &&
        (o.subjects as { name: string }[] | undefined)?.some((x) => x.name === "airlock-vault-reviewer"),
    );
    expect(bindings).toHaveLength(1);
    expect(bindings[0]).toMatchObject({
      roleRef: { kind: "ClusterRole", name: "system:auth-delegator" },
      subjects: [
        { kind: "ServiceAccount", name: "airlock-vault-reviewer", namespace: sa?.metadata.namespace },
      ],
    });
    expect(defaults.some((o) => o.metadata.name === "airlock-vault-reviewer")).toBe(false);
  });
});

describe("values.schema.json", () => {
  const cases: [string, Record<string, unknown>, string][] = [
    [
      "a typo in a key",
      { injector: { replicsa: 3 } },
      "at '/injector': additional properties 'replicsa' not allowed",
    ],
    ["zero replicas", { injector: { replicas: 0 } }, "at '/injector/replicas': minimum: got 0, want 1"],
    ["an unknown certificate mode", { certificates: { mode: "vault" } }, "at '/certificates/mode'"],
    [
      "failurePolicy in the wrong case",
      { webhook: { failurePolicy: "fail" } },
      "at '/webhook/failurePolicy'",
    ],
    [
      "a webhook timeout over the API server's 30 s",
      { webhook: { timeoutSeconds: 45 } },
      "maximum: got 45, want 30",
    ],
    [
      "an image pull policy that does not exist",
      { image: { pullPolicy: "Sometimes" } },
      "at '/image/pullPolicy'",
    ],
    ["a malformed digest", { image: { digest: "latest" } }, "at '/image/digest'"],
    [
      "a namespace that is not a DNS label",
      { injector: { watchNamespaces: ["Team_A"] } },
      "at '/injector/watchNamespaces/0'",
    ],
    [
      "a deny ratio above 1",
      { metrics: { prometheusRule: { denyRatio: 1.5 } } },
      "at '/metrics/prometheusRule/denyRatio'",
    ],
    [
      "a malformed alert duration",
      { metrics: { prometheusRule: { denyRateFor: "five minutes" } } },
      "denyRateFor",
    ],
    ["replicas as a string", { injector: { replicas: "2" } }, "at '/injector/replicas'"],
    ["an unknown top-level key", { injetcor: {} }, "additional properties 'injetcor' not allowed"],
    [
      "a misspelt vault.tokenReviewer key",
      { vault: { tokenReviewer: { enable: true } } },
      "additional properties 'enable' not allowed",
    ],
  ];
  for (const [what, values, message] of cases) {
    it(`rejects ${what}`, async () => {
      const r = await template({ values });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("values don't meet the specifications of the schema");
      expect(r.stderr).toContain(message);
    });
  }
});
