// Just-in-time approvals end to end on a real kube-apiserver, with real users (client
// certificates) and the agent's real service-account token: the sidecar (startSidecar in Kubernetes
// mode: policy from the API server, the HTTP guard, the Kubernetes approval gate) holds an agent's
// POST, creates an AccessRequest, and the admission policy from crds/ decides which decisions the
// API server accepts. Approvals are made with the real `kubectl-airlock` plugin executable.
import { mkdtemp, rm, symlink } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Rule } from "../../api/src/index.ts";
import type { Sidecar } from "../../sidecar/src/app.ts";
import type { ApprovalService } from "../../sidecar/src/approvals/index.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import { apply, connect } from "../envtest/connect.ts";
import { makeKey, signToken, TestIdp, type TestKey } from "../fixtures/oidc-provider.ts";
import { json, type Response, send, startUpstream, type Upstream } from "../http/harness.ts";
import {
  agentPolicy,
  type Cluster,
  plugin,
  ROOT,
  rawDecision,
  relay,
  setUpCluster,
  until,
} from "./cluster.ts";
import { startPodSidecar } from "./pod-sidecar.ts";

const k8s = connect();
let c: Cluster;
let idp: TestIdp;
let key: TestKey;
let upstream: Upstream;
let hook: { server: Server; texts: string[] };
const cleanups: (() => Promise<unknown> | unknown)[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function policy(port: number) {
  const rule = (name: string, path: string, approval: Partial<NonNullable<Rule["approval"]>>): Rule => ({
    name,
    action: "requireApproval",
    subjects: { groups: ["support"] },
    match: { http: { methods: ["POST"], paths: [`/${path}/**`] } },
    approval: { approvers: { groups: ["dba"] }, timeout: "45s", ...approval },
  });
  return agentPolicy(c, "orders", {
    identity: { oidc: { issuer: idp.url, audiences: ["airlock"], jwksUri: idp.jwksUri } },
    connections: [
      {
        name: "orders-api",
        protocol: "http",
        target: { host: "127.0.0.1", port },
        tls: { mode: "disable" },
      },
    ],
    rules: [
      { name: "read", action: "allow", match: { http: { methods: ["GET"] } } },
      rule("orders-need-dba", "orders", {}),
      rule("short-lived", "short", { timeout: "2s" }),
      rule("two-keys", "pair", { minApprovals: 2 }),
      rule("granted", "grant", { grantTtl: "6s" }),
      rule("later", "async", { mode: "async" }),
    ],
  });
}

interface Agent {
  sidecar: Sidecar;
  audit: AuditEvent[];
  post(path: string, opts?: { reason?: string }): Promise<Response>;
  gate: ApprovalService;
}

async function startAgent(opts: { server?: string; podName?: string } = {}): Promise<Agent> {
  const { sidecar, audit, close } = await startPodSidecar(c, {
    ...opts,
    // The install's hash key (a Secret in a cluster) is shared by every sidecar, across restarts:
    // operation fingerprints are keyed with it.
    hashKeyFile: join(tmpdir(), `airlock-approvals-hash-${c.ns}.key`),
  });
  cleanups.push(close);
  const jwt = await signToken(key, {
    iss: idp.url,
    aud: "airlock",
    sub: "sam",
    groups: ["support"],
    iat: Math.floor(Date.now() / 1000),
    exp: Math.floor(Date.now() / 1000) + 3600,
  });
  return {
    sidecar,
    audit,
    gate: sidecar.approvals as ApprovalService,
    post: (path, o = {}) =>
      send(`http://127.0.0.1:${upstream.port}${path}`, {
        proxy: `http://127.0.0.1:${sidecar.proxyPort}`,
        method: "POST",
        headers: {
          "x-airlock-identity": `Bearer ${jwt}`,
          "content-type": "application/json",
          ...(o.reason ? { "x-airlock-reason": o.reason } : {}),
        },
        body: JSON.stringify({ amount: 10 }),
      }),
  };
}

/** The pending request for `summary`, once the sidecar has created it. */
const pendingFor = (summary: string) =>
  until(`an AccessRequest for ${summary}`, async () =>
    (await c.list()).find(
      (o) => o.spec.operation.summary === summary && (o.status?.phase ?? "Pending") === "Pending",
    ),
  );

/** Whether a promise is still unsettled after `ms`. */
async function stillWaiting(p: Promise<unknown>, ms = 800): Promise<boolean> {
  let settled = false;
  void p.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  await sleep(ms);
  return !settled;
}

beforeAll(async () => {
  c = await setUpCluster(k8s, "approvals");
  // `kubectl airlock` = the kubectl-airlock executable on PATH.
  const bin = await mkdtemp(join(tmpdir(), "airlock-plugin-"));
  await symlink(join(ROOT, "bin/kubectl-airlock.js"), join(bin, "kubectl-airlock"));
  process.env.PATH = `${bin}:${dirname(process.execPath)}:${process.env.PATH ?? ""}`;
  cleanups.push(() => rm(bin, { recursive: true, force: true }));
  cleanups.push(() => rm(join(tmpdir(), `airlock-approvals-hash-${c.ns}.key`), { force: true }));
  key = await makeKey("RS256", "k1");
  idp = await TestIdp.start([key]);
  upstream = await startUpstream((req, res) => json(res, 200, { ok: true, path: req.url }));
  const texts: string[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => {
      body += d;
    });
    req.on("end", () => {
      texts.push((JSON.parse(body) as { text: string }).text);
      res.end("ok");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  hook = { server, texts };
  process.env.AIRLOCK_APPROVAL_WEBHOOKS = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack`;
  await apply(k8s, policy(upstream.port));
});

afterAll(async () => {
  delete process.env.AIRLOCK_APPROVAL_WEBHOOKS;
  for (const f of cleanups.reverse()) await f();
  await upstream?.close();
  await idp?.stop();
  await new Promise((r) => hook?.server.close(r));
});

describe("approval on the real API server", () => {
  let agent: Agent;
  beforeAll(async () => {
    agent = await startAgent();
  });

  it("holds the POST, refuses the requester and the sidecar, and completes once a dba approves with the plugin", async () => {
    const { sam, ann } = c.users;
    const before = upstream.requests.length;
    const held = agent.post("/orders/42/cancel", { reason: "customer asked, ticket 42" });
    const req = await pendingFor("POST /orders/42/cancel");
    const name = req.metadata.name as string;
    expect(req.spec).toMatchObject({
      policy: `${c.ns}/orders`,
      rule: "orders-need-dba",
      connection: "orders-api",
      requester: { user: "sam", groups: ["support"], serviceAccount: c.agentSubject, pod: "agent-0" },
      operation: { protocol: "http", summary: "POST /orders/42/cancel" },
      approvers: { groups: ["dba"] },
      minApprovals: 1,
      reason: "customer asked, ticket 42",
    });
    expect(req.metadata.labels).toMatchObject({
      "airlock.dev/pod": "agent-0",
      "airlock.dev/rule": "orders-need-dba",
    });
    await until("phase Pending", async () => (await c.get(name)).status?.phase === "Pending");

    // Approvers see it.
    const listed = await plugin(["requests", "-n", c.ns], ann);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(
      /^NAME\s+AGE\s+REQUESTER\s+POD\s+CONNECTION\s+RULE\s+APPROVALS\s+EXPIRES\s+OPERATION$/m,
    );
    expect(listed.stdout).toMatch(
      new RegExp(
        `^${name}\\s+\\S+\\s+sam\\s+agent-0\\s+orders-api\\s+orders-need-dba\\s+0/1\\s+\\S+\\s+http: POST /orders/42/cancel$`,
        "m",
      ),
    );

    // The requester cannot approve: the plugin says so, and the API server refuses a raw write.
    const self = await plugin(["approve", name, "-n", c.ns], sam);
    expect(self.code).toBe(1);
    expect(self.stderr).toMatch(/you \(sam\) requested .* cannot approve it yourself/);
    const selfRaw = await rawDecision(k8s, c.ns, await c.get(name), "approvals", { user: "sam" }, sam);
    expect(selfRaw.code).not.toBe(0);
    expect(selfRaw.stderr).toMatch(
      /ValidatingAdmissionPolicy.*user sam requested this access and cannot approve it/,
    );
    // Nor the sidecar's admin port: in Kubernetes mode decisions go through the API server only,
    // whatever credential a local process presents.
    const viaAdmin = await fetch(`http://127.0.0.1:${agent.sidecar.adminPort}/approvals/${name}/approve`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer any-token-at-all-0123456789" },
      body: JSON.stringify({ user: "ann" }),
    });
    expect(viaAdmin.status).toBe(409);
    expect(await viaAdmin.text()).toContain(`decide with \`kubectl airlock approve ${name} -n ${c.ns}\``);
    // Nor can the sidecar's own service account add an approval.
    const asAgent = c.agentKubeConfig().makeApiClient(CustomObjectsApi);
    await expect(
      asAgent.patchNamespacedCustomObjectStatus(
        {
          group: "airlock.dev",
          version: "v1alpha1",
          namespace: c.ns,
          plural: "accessrequests",
          name,
          body: { status: { approvals: [{ user: c.agentSubject, time: new Date().toISOString() }] } },
        },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      ),
    ).rejects.toThrow(/service account system:serviceaccount:\S+ cannot approve or deny access requests/);
    expect(await stillWaiting(held)).toBe(true);
    expect(upstream.requests.length).toBe(before);

    const approved = await plugin(["approve", name, "-n", c.ns, "--comment", "checked ticket 42"], ann);
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toBe(
      `accessrequest ${c.ns}/${name} approved by ann (1/1): the operation may proceed.\n`,
    );
    const res = await held;
    expect(res.status, res.text).toBe(200);
    expect(upstream.requests.length).toBe(before + 1);
    expect(upstream.requests.at(-1)?.url).toBe("/orders/42/cancel");
    // The reason was for the approver; the upstream never sees it.
    expect(upstream.requests.at(-1)?.headers["x-airlock-reason"]).toBeUndefined();

    // The audit names both: the requester in identity, the approver in approval.
    const event = agent.audit.find(
      (e) => e.operation.kind === "http" && e.operation.path === "/orders/42/cancel",
    );
    expect(event).toMatchObject({
      identity: { user: "sam", groups: ["support"], serviceAccount: c.agentSubject },
      decision: { action: "requireApproval", rule: "orders-need-dba" },
      approval: { request: name, approvers: ["ann"] },
      upstream: { status: 200 },
    });
    const stored = await until("phase Approved", async () => {
      const o = await c.get(name);
      return o.status?.phase === "Approved" ? o : undefined;
    });
    expect(stored.status?.approvals).toEqual([
      { user: "ann", time: expect.any(String), comment: "checked ticket 42" },
    ]);
    const shown = await plugin(["show", name, "-n", c.ns], ann);
    expect(shown.stdout).toMatch(/Phase:\s+Approved \(1\/1 approvals\)/);
    expect(shown.stdout).toMatch(/ann\s+\S+\s+"checked ticket 42"/);
    const asJson = await plugin(["show", name, "-n", c.ns, "-o", "json"], ann);
    expect(JSON.parse(asJson.stdout)).toMatchObject({ metadata: { name }, status: { phase: "Approved" } });

    // Notifications: the new request and the decision, Slack-compatible.
    await until("notifications", () => hook.texts.some((t) => t.includes(name) && /approved/.test(t)));
    expect(hook.texts.find((t) => t.includes(name) && /requested/.test(t))).toContain(
      `kubectl airlock approve ${name} -n ${c.ns}`,
    );
  });

  it("refuses forged and out-of-group approvals; one dba's denial fails the operation at once", async () => {
    const { ann, bob, eve } = c.users;
    const held = agent.post("/orders/43/cancel");
    const req = await pendingFor("POST /orders/43/cancel");
    const name = req.metadata.name as string;

    // ann writes an approval in bob's name: refused by the API server.
    const forged = await rawDecision(k8s, c.ns, req, "approvals", { user: "bob" }, ann);
    expect(forged.code).not.toBe(0);
    expect(forged.stderr).toMatch(/an approval must carry your own user name \(ann\), not bob/);
    // Two entries at once: refused.
    const two = await k8s.kubectl(
      [
        "patch",
        "areq",
        name,
        "-n",
        c.ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        JSON.stringify({
          status: {
            approvals: [
              { user: "ann", time: new Date().toISOString() },
              { user: "ann", time: new Date().toISOString() },
            ],
          },
        }),
      ],
      { user: ann },
    );
    expect(two.stderr).toMatch(/one approval or denial per update/);
    // eve (group sales) is not an approver: the plugin's write is refused by the API server.
    const out = await plugin(["approve", name, "-n", c.ns], eve);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(
      /refused by the API server.*user eve may not decide this request: not in spec.approvers \(groups dba/,
    );
    expect(await stillWaiting(held, 300)).toBe(true);

    const denied = await plugin(["deny", name, "-n", c.ns, "--reason", "use the refund workflow"], bob);
    expect(denied.code, denied.stderr).toBe(0);
    const res = await held;
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({
      error: "approval_denied",
      request: name,
      status: "denied",
      reason: expect.stringMatching(/denied by bob: use the refund workflow/),
    });
    await until("phase Denied", async () => (await c.get(name)).status?.phase === "Denied");
    // Decided requests take no more decisions, also when written around the plugin.
    const late = await rawDecision(k8s, c.ns, await c.get(name), "approvals", { user: "ann" }, ann);
    expect(late.stderr).toMatch(/the request is Denied and takes no more decisions/);
  });

  it("expires at the rule's timeout: the operation fails, the request is marked Expired", async () => {
    const t0 = Date.now();
    const res = await agent.post("/short/1");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1900);
    expect(res.status).toBe(403);
    const body = res.json<{ request: string; status: string; reason: string }>();
    expect(body).toMatchObject({ error: "approval_required", status: "expired" });
    expect(body.reason).toMatch(/expired without enough approvals/);
    expect((await c.get(body.request)).status?.phase).toBe("Expired");
    const late = await plugin(["approve", body.request, "-n", c.ns], c.users.ann);
    expect(late.stderr).toMatch(/is Expired; it takes no more decisions/);
  });

  it("needs minApprovals distinct users: the same approver twice does not count", async () => {
    const { ann, bob } = c.users;
    const held = agent.post("/pair/9");
    const req = await pendingFor("POST /pair/9");
    const name = req.metadata.name as string;
    expect((await plugin(["approve", name, "-n", c.ns], ann)).code).toBe(0);
    // A second approval by ann in her own name: the API server accepts it, the sidecar ignores it.
    const again = await rawDecision(k8s, c.ns, await c.get(name), "approvals", { user: "ann" }, ann);
    expect(again.code, again.stderr).toBe(0);
    expect((await c.get(name)).status?.approvals).toHaveLength(2);
    expect(await stillWaiting(held)).toBe(true);
    // This time through kubectl's plugin mechanism: `kubectl airlock` finds kubectl-airlock on PATH.
    const second = await k8s.kubectl(["airlock", "approve", name, "-n", c.ns], { user: bob });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/approved by bob \(2\/2\)/);
    expect((await held).status).toBe(200);
    expect(agent.audit.at(-1)).toMatchObject({ approval: { request: name, approvers: ["ann", "bob"] } });
  });

  it("opens a grant for grantTtl: later operations pass without a request, and stop after it", async () => {
    const { ann, bob } = c.users;
    const held = agent.post("/grant/a");
    const req = await pendingFor("POST /grant/a");
    const name = req.metadata.name as string;
    // The approver sees what approving lets through: the rule's whole match as the API server
    // stores it (schema defaults filled in), not just /grant/a.
    expect(req.spec.grantCovers).toBe(
      "{ http: { binaryBodies: false, methods: [ POST ], paths: [ /grant/** ], websocket: false } }",
    );
    const shown = await plugin(["show", name, "-n", c.ns], ann);
    expect(shown.stdout).toMatch(
      /^Grant covers: every operation matching rule granted \(\{ http: \{ binaryBodies: false, methods: \[ POST \], paths: \[ \/grant\/\*\* \], websocket: false \} \}\) by sam via system:serviceaccount:\S+ on connection orders-api, without asking again$/m,
    );
    expect((await plugin(["approve", name, "-n", c.ns], ann)).code).toBe(0);
    expect((await held).status).toBe(200);

    const next = await agent.post("/grant/b");
    expect(next.status).toBe(200);
    expect(agent.audit.at(-1)).toMatchObject({
      operation: { path: "/grant/b" },
      approval: { request: name, approvers: ["ann"], grant: true },
    });
    expect((await c.list()).filter((o) => o.spec.rule === "granted")).toHaveLength(1);
    const grants = await until("grantExpiresAt", async () => {
      const g = await plugin(["grants", "-n", c.ns], bob);
      return g.stdout.includes(name) ? g : undefined;
    });
    expect(grants.stdout).toMatch(/^REQUEST\s+REQUESTER\s+CONNECTION\s+RULE\s+APPROVED BY\s+EXPIRES$/m);
    expect(grants.stdout).toMatch(
      new RegExp(`^${name}\\s+sam\\s+orders-api\\s+granted\\s+ann\\s+\\S+$`, "m"),
    );

    // After grantTtl (counted from when the sidecar saw the approval) the next operation asks again.
    const grantEnd = Date.parse((await c.get(name)).status?.grantExpiresAt ?? "");
    expect(grantEnd).toBeGreaterThan(Date.now());
    await sleep(grantEnd - Date.now() + 200);
    const after = agent.post("/grant/c");
    const fresh = await pendingFor("POST /grant/c");
    expect(fresh.metadata.name).not.toBe(name);
    expect(
      (await plugin(["deny", fresh.metadata.name as string, "-n", c.ns, "--reason", "enough"], bob)).code,
    ).toBe(0);
    expect((await after).status).toBe(403);
    expect((await plugin(["grants", "-n", c.ns], bob)).stdout).toBe(`No open grants in namespace ${c.ns}.\n`);
  });

  it("async mode answers at once with the request; the retry passes once approved", async () => {
    const first = await agent.post("/async/7");
    expect(first.status).toBe(403);
    const body = first.json<{ request: string; status: string; reason: string }>();
    expect(body).toMatchObject({ error: "approval_required", status: "pending" });
    expect(body.reason).toContain(`kubectl airlock approve ${body.request} -n ${c.ns}`);
    const retry = await agent.post("/async/7");
    expect(retry.json()).toMatchObject({ request: body.request, status: "pending" });
    expect((await plugin(["approve", body.request, "-n", c.ns], c.users.ann)).code).toBe(0);
    const passed = await until("the retry to pass", async () => {
      const r = await agent.post("/async/7");
      return r.status === 200 ? r : undefined;
    });
    expect(passed.status).toBe(200);
    expect(agent.audit.at(-1)).toMatchObject({ approval: { request: body.request, approvers: ["ann"] } });
    // The approval was for one operation: the next retry asks again.
    const third = await agent.post("/async/7");
    expect(third.json()).toMatchObject({ status: "pending" });
    expect(third.json<{ request: string }>().request).not.toBe(body.request);
  });

  it("exports approval metrics on the admin port", async () => {
    const text = await (await fetch(`http://127.0.0.1:${agent.sidecar.adminPort}/metrics`)).text();
    expect(text).toMatch(/^airlock_approval_requests_pending \d+$/m);
    expect(text).toMatch(/^airlock_approval_decisions_total\{outcome="approved",group="dba"\} [1-9]\d*$/m);
    expect(text).toMatch(/^airlock_approval_decisions_total\{outcome="denied",group="dba"\} [1-9]\d*$/m);
    expect(text).toMatch(/^airlock_approval_decisions_total\{outcome="expired",group="dba"\} [1-9]\d*$/m);
    expect(text).toMatch(/^airlock_approval_decision_seconds_count [1-9]\d*$/m);
    const listed = await (await fetch(`http://127.0.0.1:${agent.sidecar.adminPort}/approvals`)).json();
    expect(listed).toMatchObject({ mode: "kubernetes", namespace: c.ns });
  });
});

describe("restarts and outages", () => {
  it("a restarted sidecar re-attaches to its pending request and completes the retried operation", async () => {
    const first = await startAgent({ podName: "agent-r" });
    const held = first.post("/orders/77/refund").catch((err: Error) => err);
    const req = await pendingFor("POST /orders/77/refund");
    const name = req.metadata.name as string;
    await first.sidecar.close();
    await held; // the agent's connection went down with the sidecar

    const second = await startAgent({ podName: "agent-r" });
    await second.gate.ready;
    expect(second.gate.pending().map((o) => o.metadata.name)).toContain(name);
    const retried = second.post("/orders/77/refund");
    expect(await stillWaiting(retried, 500)).toBe(true);
    expect((await plugin(["approve", name, "-n", c.ns], c.users.ann)).code).toBe(0);
    expect((await retried).status).toBe(200);
    expect(second.audit.at(-1)).toMatchObject({ approval: { request: name, approvers: ["ann"] } });
    expect(
      (await c.list()).filter((o) => o.spec.operation.summary === "POST /orders/77/refund"),
    ).toHaveLength(1);
  });

  it("fails the held operation closed at its timeout when the API server is unreachable", async () => {
    const link = await relay(new URL(k8s.server));
    const agent = await startAgent({ server: link.url, podName: "agent-o" });
    await link.cut();
    const t0 = Date.now();
    const res = await agent.post("/short/outage");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1900);
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({
      error: "approval_required",
      status: "unavailable",
      reason: expect.stringMatching(
        /approval service unreachable: no access request could be created within 2s.*not performed/,
      ),
    });
    expect(upstream.requests.some((r) => r.url === "/short/outage")).toBe(false);
    expect(agent.audit.at(-1)).toMatchObject({ upstream: { error: "approval_unavailable" } });
  });

  it("fails closed when the API server goes away while the operation is held", async () => {
    const link = await relay(new URL(k8s.server));
    const agent = await startAgent({ server: link.url, podName: "agent-p" });
    const held = agent.post("/short/held");
    const req = await pendingFor("POST /short/held");
    await link.cut();
    const res = await held;
    expect(res.status).toBe(403);
    expect(res.json<{ reason: string }>().reason).toMatch(
      new RegExp(
        `approval service unreachable: access request ${req.metadata.name} could not confirm it before it expired`,
      ),
    );
  });
});
