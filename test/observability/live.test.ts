// The dashboards and alerts against a real Prometheus (Debian's 2.42) scraping a real sidecar and a
// real injector under test traffic.
//
// - The sidecar runs in Kubernetes mode (startSidecar from sidecar/src/app.ts): its policy comes
//   from the real kube-apiserver (envtest) through a TCP relay this test can cut, with a
//   ServiceAccount token bound to the airlock-sidecar roles; requireApproval opens real
//   AccessRequests that a user in the approver group decides with kubectl (the admission policy of
//   crds/ checks them). Traffic: allowed reads of a local upstream whose answers carry PII (masked),
//   denied deletes, operations held for approval (approved, denied, one left pending), calls to
//   a dead upstream, a destination no policy knows.
// - The injector runs with the chart's flags (cert-manager style --cert-dir) and answers
//   AdmissionReviews posted to it: injected, skipped, refused, ignored, and malformed (errors).
// - Prometheus scrapes both every second, with the namespace/pod target labels the chart's
//   PodMonitor/ServiceMonitor give, and evaluates the chart's PrometheusRule rendered with short
//   `for`s. Every dashboard panel's query and template variable must return data; then the staged
//   failures (API server cut off, a broken certificate) must make every alert fire.
import { randomBytes, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { type Agent, createServer, request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningInjector, startInjector } from "../../injector/src/main.ts";
import { type Sidecar, startSidecar } from "../../sidecar/src/app.ts";
import { ensureHelm, ROOT } from "../chart/helm.ts";
import { connect } from "../envtest/connect.ts";
import { relay } from "../harness/relay.ts";
import {
  dashboardQueries,
  dashboardVariables,
  groupingLabels,
  labelValuesQuery,
  metricsOf,
  substitute,
} from "./dashboards.ts";
import { type Alert, freePort, type RunningPrometheus, startPrometheus } from "./prometheus.ts";
import { type RuleGroup, renderRuleFile } from "./rules.ts";

const k8s = connect();
const scope = randomBytes(3).toString("hex");
const INJECTOR_NS = "airlock-system";
const POD = "agent-0";
const APPROVERS = `approvers-${scope}`;
let ns: string;
let prom: RunningPrometheus;
let sidecar: Sidecar | undefined;
let injector: RunningInjector | undefined;
let rules: { file: string; groups: RuleGroup[] };
let certDir: string;
const cleanups: (() => Promise<void> | void)[] = [];

// ----------------------------------------------------------------------------------------------
// Helpers

async function kubectl(args: readonly string[], stdin?: string, user?: { kubeconfigPath: string }) {
  let r = await k8s.kubectl(args, { ...(stdin === undefined ? {} : { stdin }), ...(user ? { user } : {}) });
  for (let i = 0; i < 5 && r.code !== 0 && /conflict|has been modified/i.test(r.stderr); i++) {
    await new Promise((res) => setTimeout(res, 300 * (i + 1)));
    r = await k8s.kubectl(args, { ...(stdin === undefined ? {} : { stdin }), ...(user ? { user } : {}) });
  }
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

async function until<T>(fn: () => Promise<T | undefined | false>, what: string, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface Reply {
  status: number;
  body: string;
}

function send(
  port: number,
  method: string,
  path: string,
  opts: { agent?: Agent | false; signal?: AbortSignal; host?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: "127.0.0.1",
        port,
        method,
        path,
        agent: opts.agent ?? false,
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.host ? { headers: { host: opts.host } } : {}),
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (d: string) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(method === "POST" ? "{}" : undefined);
  });
}

function review(object: unknown, operation = "CREATE"): string {
  return JSON.stringify({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: randomUUID(),
      kind: { group: "", version: "v1", kind: "Pod" },
      resource: { group: "", version: "v1", resource: "pods" },
      namespace: ns,
      operation,
      userInfo: { username: "admin" },
      object,
    },
  });
}

function admission(url: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      { method: "POST", ca: k8s.caPem, headers: { "content-type": "application/json" } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const pod = (name: string, extra: { labels?: Record<string, string>; runAsUser?: number } = {}) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: { name, namespace: ns, labels: { app: "agent", ...extra.labels } },
  spec: {
    containers: [
      {
        name: "agent",
        image: "python:3.12-slim",
        ...(extra.runAsUser ? { securityContext: { runAsUser: extra.runAsUser } } : {}),
      },
    ],
  },
});

// ----------------------------------------------------------------------------------------------
// Setup: cluster objects, upstream, sidecar, injector, Prometheus, traffic

let customersPort: number;
let billingPort: number;
const held: { path: string; done: Promise<Reply | Error>; abort: AbortController }[] = [];

async function setUpCluster(): Promise<void> {
  // CRDs, the approvals admission policy and the Airlock roles, as crds/ ships them.
  await kubectl(["apply", "-f", join(ROOT, "crds")]);
  await kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd/accessrequests.airlock.dev"]);
  ns = await k8s.createNamespace("observability");
  await kubectl(["create", "serviceaccount", "agent", "-n", ns]);
  await kubectl([
    "create",
    "rolebinding",
    "airlock-sidecar",
    "-n",
    ns,
    "--clusterrole=airlock-sidecar",
    `--serviceaccount=${ns}:agent`,
  ]);
  await kubectl([
    "create",
    "clusterrolebinding",
    `airlock-sidecar-cluster-${scope}`,
    "--clusterrole=airlock-sidecar-cluster",
    `--serviceaccount=${ns}:agent`,
  ]);
  await kubectl([
    "create",
    "rolebinding",
    "approvers",
    "-n",
    ns,
    "--clusterrole=airlock-approver",
    `--group=${APPROVERS}`,
  ]);
  cleanups.push(() => void k8s.kubectl(["delete", "clusterrolebinding", `airlock-sidecar-cluster-${scope}`]));
}

async function startUpstream(): Promise<number> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      const body =
        req.method === "GET"
          ? { id: 1, name: "Ada", email: "ada.lovelace@example.com", card: "4111 1111 1111 1111" }
          : { ok: true };
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as { port: number }).port;
}

async function startTheSidecar(): Promise<Sidecar> {
  const upstream = await startUpstream();
  const dead = await freePort(); // nothing listens: upstream errors
  customersPort = await freePort();
  billingPort = await freePort();
  const policy = {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: "agent", namespace: ns },
    spec: {
      podSelector: { matchLabels: { app: "agent" } },
      connections: [
        {
          name: "customers",
          protocol: "http",
          target: { host: "127.0.0.1", port: upstream },
          tls: { mode: "disable" },
          credentials: {
            secretRef: { name: "customers-api" },
            http: { header: "Authorization", key: "token" },
          },
          listen: { port: customersPort },
        },
        {
          name: "billing",
          protocol: "http",
          target: { host: "127.0.0.1", port: dead },
          tls: { mode: "disable" },
          listen: { port: billingPort },
        },
        // An HTTPS host the sidecar intercepts: it mints its pod CA (AirlockPodCaNotRenewed).
        {
          name: "ledger",
          protocol: "http",
          target: { host: "ledger.internal", port: 443 },
          tls: { mode: "verify-full" },
        },
      ],
      rules: [
        { name: "read", action: "allow", match: { http: { methods: ["GET"], paths: ["/customers/**"] } } },
        { name: "billing", action: "allow", connections: ["billing"], match: { http: { methods: ["GET"] } } },
        { name: "no-deletes", action: "deny", match: { http: { methods: ["DELETE"] } } },
        {
          name: "refunds",
          action: "requireApproval",
          match: { http: { methods: ["POST"], paths: ["/refunds/*"] } },
          approval: { approvers: { groups: [APPROVERS] }, timeout: "10m" },
        },
      ],
      masking: [{ name: "pii", detectors: ["email", "creditCard"], strategy: "partial" }],
    },
  };
  await kubectl(["apply", "-f", "-"], JSON.stringify(policy));
  await kubectl(
    ["apply", "-f", "-"],
    JSON.stringify({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "customers-api", namespace: ns },
      stringData: { token: "t0ken" },
    }),
  );

  const dir = await mkdtemp(join(tmpdir(), "airlock-observability-"));
  const podinfo = join(dir, "podinfo");
  await mkdir(podinfo);
  await writeFile(join(podinfo, "namespace"), ns);
  await writeFile(join(podinfo, "pod_name"), POD);
  await writeFile(join(podinfo, "service_account"), "agent");
  await writeFile(join(podinfo, "labels"), 'app="agent"\n');
  const secrets = join(dir, "secrets");
  await mkdir(join(secrets, "customers-api"), { recursive: true });
  await writeFile(join(secrets, "customers-api", "token"), "t0ken");

  // The sidecar's API access: the agent ServiceAccount's token, through the relay.
  const cut = relay(new URL(k8s.server));
  const relayPort = await cut.up();
  cleanups.push(() => cut.down());
  cutApiServer = () => cut.down();
  const token = (await kubectl(["create", "token", "agent", "-n", ns, "--duration=1h"])).trim();
  const { KubeConfig } = await import("@kubernetes/client-node");
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: "envtest",
        server: `https://127.0.0.1:${relayPort}`,
        caData: Buffer.from(k8s.caPem).toString("base64"),
      },
    ],
    users: [{ name: "agent", token }],
    contexts: [{ name: "envtest", cluster: "envtest", user: "agent", namespace: ns }],
    currentContext: "envtest",
  });
  return startSidecar({
    kubernetes: true,
    kubeConfig: kc,
    podInfoDir: podinfo,
    secretsDir: secrets,
    hashKeyFile: join(dir, "hash.key"),
    adminHost: "127.0.0.1",
    adminPort: 0,
    proxyPort: 0,
    capturePort: false,
    logger: pino({ level: "silent" }),
    // Audit events are written whatever the log level: keep them out of the test output.
    audit: { emit() {} },
  });
}

let cutApiServer: () => Promise<void> = async () => {};

async function startTheInjector(): Promise<RunningInjector> {
  certDir = await mkdtemp(join(tmpdir(), "airlock-observability-tls-"));
  const cert = await k8s.issueServingCert(["127.0.0.1"]);
  await writeFile(join(certDir, "tls.crt"), cert.certPem);
  await writeFile(join(certDir, "tls.key"), cert.keyPem);
  return startInjector([
    "--port=0",
    "--metrics-port=0",
    "--host=127.0.0.1",
    `--cert-dir=${certDir}`,
    `--kubeconfig=${k8s.kubeconfigPath}`,
    `--namespace=${INJECTOR_NS}`,
    `--watch-namespaces=${ns}`,
    "--log-level=silent",
  ]);
}

async function driveTraffic(s: Sidecar, inj: RunningInjector): Promise<void> {
  // Allowed reads (masked PII in the answer) and denied deletes: mostly denials on "customers".
  for (let i = 0; i < 8; i++) {
    const r = await send(customersPort, "GET", `/customers/${i}`);
    expect(r.status, r.body).toBe(200);
    expect(r.body).not.toContain("ada.lovelace@example.com");
  }
  for (let i = 0; i < 24; i++)
    expect((await send(customersPort, "DELETE", `/customers/${i}`)).status).toBe(403);
  // An allowed call to an upstream that refuses connections.
  for (let i = 0; i < 3; i++)
    expect((await send(billingPort, "GET", "/invoices")).status).toBeGreaterThanOrEqual(500);
  // A destination no policy connection names, through the explicit proxy.
  await send(s.proxyPort, "GET", "http://nowhere.invalid/", { host: "nowhere.invalid" }).catch(
    () => undefined,
  );

  // Admissions: injected, skipped (opt-out), refused (runs as the proxy UID), ignored, errors.
  const url = inj.server.url;
  await until(
    async () => (await fetch(`http://127.0.0.1:${inj.server.metricsPort}/readyz`)).ok,
    "injector ready",
  );
  for (let i = 0; i < 4; i++) expect(await admission(url, review(pod(`a-${i}`)))).toBe(200);
  expect(await admission(url, review(pod("out", { labels: { "airlock.dev/inject": "false" } })))).toBe(200);
  expect(await admission(url, review(pod("uid", { runAsUser: 1717 })))).toBe(200);
  expect(await admission(url, review(pod("upd"), "UPDATE"))).toBe(200);
  for (let i = 0; i < 3; i++) expect(await admission(url, "{not json")).toBe(400);

  // Operations held for approval: two approved, two denied, one left pending. In two rounds with
  // scrapes in between: a labelled counter appears at its first increment, and increase() only
  // sees the increments after Prometheus first saw the series.
  const alice = await k8s.createUser(`alice-${scope}`, [APPROVERS]);
  const decide = async (path: string, how: "approvals" | "denials") => {
    const name = await until(async () => {
      const list = JSON.parse(await kubectl(["get", "accessrequests", "-n", ns, "-o", "json"])) as {
        items: { metadata: { name: string }; spec: { operation: { summary: string } } }[];
      };
      return list.items.find((x) => x.spec.operation.summary.includes(path))?.metadata.name;
    }, `the AccessRequest for POST ${path}`);
    const entry =
      how === "approvals"
        ? { user: alice.name, time: new Date().toISOString(), comment: "ok" }
        : { user: alice.name, time: new Date().toISOString(), reason: "not today" };
    await kubectl(
      [
        ...["patch", "accessrequest", name, "-n", ns, "--subresource=status", "--type=merge"],
        ...["-p", JSON.stringify({ status: { [how]: [entry] } })],
      ],
      undefined,
      alice,
    );
  };
  const hold = (path: string) => {
    const abort = new AbortController();
    const done = send(customersPort, "POST", path, { signal: abort.signal }).catch((e: Error) => e);
    held.push({ path, done, abort });
    return done;
  };
  for (const round of [1, 2]) {
    const approved = hold(`/refunds/${round}a`);
    const denied = hold(`/refunds/${round}d`);
    await decide(`/refunds/${round}a`, "approvals");
    await decide(`/refunds/${round}d`, "denials");
    expect(await approved).toMatchObject({ status: 200 });
    expect(await denied).toMatchObject({ status: 403 });
    await scrapes(2);
  }
  void hold("/refunds/pending");
  await until(
    async () => (await prom.query("airlock_approval_requests_pending > 0"))[0],
    "a pending request",
  );
}

/** Waits until Prometheus has scraped every target `n` more times. */
async function scrapes(n: number): Promise<void> {
  const count = async () => Number((await prom.query("min(count_over_time(up[10m]))"))[0]?.value[1] ?? 0);
  const target = (await count()) + n;
  await until(async () => (await count()) >= target, `${n} more scrapes`);
}

/** Light traffic until the end, so rate() windows always hold recent samples. */
function keepTrafficGoing(inj: RunningInjector): () => void {
  const timer = setInterval(() => {
    void send(customersPort, "GET", "/customers/1").catch(() => undefined);
    // Mostly denials, as in the scenario: the deny-rate alert stays true while the test runs.
    void send(customersPort, "DELETE", "/customers/1").catch(() => undefined);
    void send(customersPort, "DELETE", "/customers/2").catch(() => undefined);
    void admission(inj.server.url, review(pod(`bg-${Date.now()}`))).catch(() => undefined);
  }, 1_000);
  return () => clearInterval(timer);
}

beforeAll(async () => {
  await ensureHelm();
  // Short `for`s and thresholds so the staged scenario fires every alert within seconds.
  rules = await renderRuleFile({
    approvalPendingFor: "2s",
    denyRateFor: "2s",
    denyRateMinOpsPerSecond: 0.001,
    policyStaleAfterSeconds: 2,
    policyStaleFor: "2s",
    injectorErrorFor: "2s",
    // Past the 24 h CA's whole lifetime: the sidecar's fresh CA counts as "not renewed in time".
    podCaRenewalMarginSeconds: 90_000,
  });
  await setUpCluster();
  sidecar = await startTheSidecar();
  cleanups.push(async () => {
    for (const h of held) h.abort.abort();
    await sidecar?.close();
  });
  injector = await startTheInjector();
  cleanups.push(() => injector?.stop());
  // A session held open during the scrapes (airlock_active_sessions).
  const session = tcpConnect(customersPort, "127.0.0.1");
  cleanups.push(() => void session.destroy());

  prom = await startPrometheus({
    ruleFiles: [rules.file],
    targets: [
      {
        job: "airlock-sidecars",
        address: `127.0.0.1:${sidecar.adminPort}`,
        labels: { namespace: ns, pod: POD },
      },
      {
        job: "airlock-injector",
        address: `127.0.0.1:${injector.server.metricsPort}`,
        labels: { namespace: INJECTOR_NS, pod: "airlock-injector-0" },
      },
    ],
  });
  cleanups.push(() => prom.stop());
  await until(async () => (await prom.targets()).every((t) => t.health === "up"), "targets up");
  await scrapes(2);
  await driveTraffic(sidecar, injector);
  cleanups.push(keepTrafficGoing(injector));
  // Enough scrapes after the traffic for rate() and histogram_quantile().
  await until(
    async () => (await prom.query("count_over_time(airlock_approval_requests_pending[1m])"))[0],
    "scrapes",
  );
  await new Promise((r) => setTimeout(r, 4_000));
}, 900_000);

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

// ----------------------------------------------------------------------------------------------

describe("Prometheus scrapes the sidecar and the injector", () => {
  it("both targets are up", async () => {
    const targets = await prom.targets();
    expect(targets.map((t) => [t.labels.job, t.health, t.lastError])).toEqual(
      expect.arrayContaining([
        ["airlock-sidecars", "up", ""],
        ["airlock-injector", "up", ""],
      ]),
    );
  });
});

// A concrete selection as Grafana writes a multi-value one: (a|b).
const CONNECTIONS = "(customers|billing)";

describe("every dashboard panel's query returns data", () => {
  for (const q of dashboardQueries()) {
    describe(`${q.dashboard} › ${q.panel} (${q.refId})`, () => {
      for (const selection of ["one namespace and connection", "All"] as const) {
        it(selection, async () => {
          const namespace = q.file === "injector.json" ? INJECTOR_NS : ns;
          const vars =
            selection === "All"
              ? { namespace: ".*", connection: ".*" }
              : { namespace, connection: CONNECTIONS };
          const expr = substitute(q.expr, vars);
          const result = await prom.query(expr);
          expect(result.length, expr).toBeGreaterThan(0);
          const finite = result.filter((s) => Number.isFinite(Number(s.value[1])));
          expect(finite.length, `${expr} returned only ${JSON.stringify(result)}`).toBeGreaterThan(0);
          // Every label the query groups by is on the series (else the legend shows nothing).
          for (const label of groupingLabels(q.expr))
            for (const metric of metricsOf(q.expr)) {
              const has = await prom.query(`count(${metric}{${label}!=""})`);
              expect(has.length, `${metric} has no label ${label} (grouped by in ${q.expr})`).toBeGreaterThan(
                0,
              );
            }
        });
      }
    });
  }
});

describe("every dashboard variable lists the live values", () => {
  for (const v of dashboardVariables()) {
    it(`${v.dashboard} › $${v.name}`, async () => {
      const { expr, label } = labelValuesQuery(substitute(v.query, { namespace: ".*" }));
      const values = (await prom.query(expr)).map((s) => s.metric[label]);
      const expected =
        v.name === "connection" ? "customers" : v.dashboard.includes("Injector") ? INJECTOR_NS : ns;
      expect(values).toContain(expected);
    });
  }
});

describe("alerts, live", () => {
  const exprs = () => rules.groups.flatMap((g) => g.rules).filter((r) => r.alert);

  it("a sidecar whose policy source is up is not stale", async () => {
    const stale = exprs().find((r) => r.alert === "AirlockSidecarPolicyStale");
    expect(await prom.query(stale?.expr ?? "")).toEqual([]);
  });

  it("the staged scenario fires every alert: denials, a held approval, admission errors, the API server cut off, a broken certificate", async () => {
    // The sidecar loses the API server: it keeps enforcing its last policy, now stale.
    await cutApiServer();
    // The API server sends the injector garbage (a proxy in between mangling requests): errors.
    if (!injector) throw new Error("injector not running");
    for (let i = 0; i < 20; i++) expect(await admission(injector.server.url, "{not json")).toBe(400);
    // A renewal that writes a broken certificate: the injector keeps the old one and counts an error.
    await writeFile(
      join(certDir, "tls.crt"),
      "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    );
    const wanted = exprs().map((r) => r.alert);
    let last: Alert[] = [];
    const firing = await until(
      async () => {
        last = await prom.alerts();
        const names = new Set(last.filter((a) => a.state === "firing").map((a) => a.labels.alertname));
        return wanted.every((a) => names.has(a)) ? last : undefined;
      },
      `all of ${wanted.join(", ")} firing`,
      60_000,
    ).catch((err: Error) => {
      throw new Error(
        `${err.message}; alerts now: ${JSON.stringify(last.map((a) => [a.labels.alertname, a.state]))}`,
      );
    });
    const byName = (name: string) => firing.find((a) => a.labels.alertname === name && a.state === "firing");
    expect(byName("AirlockDenyRateSpike")?.labels).toMatchObject({ namespace: ns, connection: "customers" });
    expect(byName("AirlockSidecarPolicyStale")?.labels).toMatchObject({ namespace: ns, pod: POD });
    expect(byName("AirlockApprovalPendingTooLong")?.labels).toMatchObject({ namespace: ns });
    expect(byName("AirlockInjectorErrors")?.labels).toMatchObject({ namespace: INJECTOR_NS });
  }, 120_000);

  it("every PrometheusRule expression returns data through the HTTP API", async () => {
    for (const r of exprs()) {
      const result = await prom.query(r.expr);
      expect(result.length, `${r.alert}: ${r.expr}`).toBeGreaterThan(0);
    }
  });
});
