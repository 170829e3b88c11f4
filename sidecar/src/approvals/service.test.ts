// The approval service over the local store (the standalone mode's real store; the Kubernetes store
// is exercised against a real API server in test/approvals).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AccessRequest } from "../../../api/src/index.ts";
import type { WorkloadIdentity } from "../identity/index.ts";
import type { Decision, Rule } from "../policy/types.ts";
import type { ApprovalInput } from "./gate.ts";
import { createLocalStore, type LocalApprovalStore } from "./local-store.ts";
import { createApprovalMetrics } from "./metrics.ts";
import type { Notice } from "./notify.ts";
import { type ApprovalServiceOptions, createApprovalService } from "./service.ts";
import { type ApprovalStore, RejectedError } from "./store.ts";

const logger = pino({ level: "silent" });
const KEY = Buffer.alloc(32, 7);
const workload: WorkloadIdentity = {
  namespace: "agents",
  podName: "agent-0",
  serviceAccount: "agent",
  subject: "system:serviceaccount:agents:agent",
  labels: {},
};

type Approval = NonNullable<Rule["approval"]>;

const decision = (approval: NonNullable<Rule["approval"]>): Decision => ({
  action: "requireApproval",
  policy: "agents/p",
  rule: "orders-need-approval",
  reason: "rule orders-need-approval requires approval",
  approval,
});

function input(approval: NonNullable<Rule["approval"]>, over: Partial<ApprovalInput> = {}): ApprovalInput {
  return {
    connection: "orders-api",
    protocol: "http",
    decision: decision(approval),
    subject: { serviceAccount: workload.subject, user: "sam", groups: ["support"] },
    operation: { kind: "http", method: "POST", path: "/orders", websocket: false },
    session: "s1",
    signal: new AbortController().signal,
    ...over,
  };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function start(over: Partial<ApprovalServiceOptions> & { store?: ApprovalStore } = {}) {
  const store = (over.store as LocalApprovalStore | undefined) ?? createLocalStore({ namespace: "agents" });
  const registry = new Registry();
  const metrics = createApprovalMetrics(registry);
  const notices: Notice[] = [];
  const service = createApprovalService({
    store,
    workload,
    logger,
    hashKey: KEY,
    metrics,
    notifier: { notify: (n) => void notices.push(n), close: async () => undefined },
    ...over,
  });
  cleanups.push(() => service.close());
  return { service, store, registry, notices };
}

/** Resolves with the first pending request of the store once it exists. */
async function pendingRequest(store: ApprovalStore): Promise<AccessRequest> {
  await vi.waitFor(() => expect(store.list().length).toBeGreaterThan(0), { timeout: 5000, interval: 10 });
  return store.list()[0] as AccessRequest;
}

const metric = async (registry: Registry, name: string) =>
  (await registry.getSingleMetricAsString(name)).trim();

describe("wait mode", () => {
  it("holds the operation until an approver approves, then lets it through once", async () => {
    const { service, store, notices, registry } = start();
    const held = service.request(input({ approvers: { groups: ["dba"] } }));
    const req = await pendingRequest(store);
    expect(req.spec).toMatchObject({
      policy: "agents/p",
      rule: "orders-need-approval",
      connection: "orders-api",
      requester: { user: "sam", groups: ["support"], serviceAccount: workload.subject, pod: "agent-0" },
      operation: { protocol: "http", summary: "POST /orders" },
      approvers: { groups: ["dba"] },
      minApprovals: 1,
    });
    expect(req.metadata.labels).toMatchObject({
      "airlock.dev/pod": "agent-0",
      "airlock.dev/rule": "orders-need-approval",
    });
    expect(await metric(registry, "airlock_approval_requests_pending")).toMatch(/ 1$/);
    (store as LocalApprovalStore).approve(req.metadata.name as string, { user: "ann", comment: "ok" });
    const outcome = await held;
    expect(outcome).toEqual({ approved: true, request: req.metadata.name, approvers: ["ann"], grant: false });
    await vi.waitFor(async () =>
      expect((await store.get(req.metadata.name as string))?.status?.phase).toBe("Approved"),
    );
    expect(notices.map((n) => n.kind)).toEqual(["requested", "approved"]);
    expect(await metric(registry, "airlock_approval_requests_pending")).toMatch(/ 0$/);
    expect(await metric(registry, "airlock_approval_decisions_total")).toMatch(
      /outcome="approved",group="dba"} 1/,
    );
    expect(await metric(registry, "airlock_approval_decision_seconds")).toMatch(/_count 1/);

    // Single use: the same operation again needs a new request.
    const again = service.request(input({ approvers: { groups: ["dba"] }, timeout: "200ms" }));
    expect(await again).toMatchObject({ approved: false, status: "expired" });
    expect(store.list()).toHaveLength(2);
  });

  it("fails at once on a denial, naming who denied and why", async () => {
    const { service, store, notices } = start();
    const held = service.request(input({ approvers: { groups: ["dba"] } }));
    const req = await pendingRequest(store);
    (store as LocalApprovalStore).deny(req.metadata.name as string, {
      user: "bob",
      reason: "use the archive job",
    });
    const outcome = await held;
    expect(outcome).toMatchObject({ approved: false, status: "denied", request: req.metadata.name });
    expect(outcome.message).toMatch(/denied by bob: use the archive job/);
    await vi.waitFor(async () =>
      expect((await store.get(req.metadata.name as string))?.status?.phase).toBe("Denied"),
    );
    expect(notices.map((n) => n.kind)).toEqual(["requested", "denied"]);
  });

  it("expires at the rule's timeout and writes phase Expired", async () => {
    const { service, store, registry } = start();
    const t0 = Date.now();
    const outcome = await service.request(input({ approvers: { groups: ["dba"] }, timeout: "300ms" }));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(outcome).toMatchObject({ approved: false, status: "expired" });
    expect(outcome.message).toMatch(/expired without enough approvals/);
    expect(store.list()[0]?.status?.phase).toBe("Expired");
    expect(await metric(registry, "airlock_approval_decisions_total")).toMatch(
      /outcome="expired",group="dba"} 1/,
    );
  });

  it("counts distinct users for minApprovals and never the requester", async () => {
    const { service, store } = start();
    const held = service.request(input({ approvers: { groups: ["dba"] }, minApprovals: 2 }));
    const name = (await pendingRequest(store)).metadata.name as string;
    const local = store as LocalApprovalStore;
    local.approve(name, { user: "ann" });
    expect(() => local.approve(name, { user: "ann" })).toThrow(/already decided/);
    expect(() => local.approve(name, { user: "sam" })).toThrow(/cannot approve it/);
    // Even if a store let a duplicate through, it would not count.
    const cur = (await store.get(name)) as AccessRequest;
    await store.patchStatus(name, {
      approvals: [...(cur.status?.approvals ?? []), { user: "ann", time: "x" }],
    });
    let settled = false;
    void held.then(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(settled).toBe(false);
    local.approve(name, { user: "bob" });
    expect(await held).toMatchObject({ approved: true, approvers: ["ann", "bob"] });
  });

  it("stops waiting when the agent goes away; a retry of the same operation picks the request up", async () => {
    const { service, store } = start();
    const ac = new AbortController();
    const first = service.request(input({ approvers: { groups: ["dba"] } }, { signal: ac.signal }));
    const name = (await pendingRequest(store)).metadata.name as string;
    ac.abort();
    expect(await first).toMatchObject({ approved: false, status: "pending", request: name });
    const retry = service.request(input({ approvers: { groups: ["dba"] } }));
    await new Promise((r) => setTimeout(r, 20));
    (store as LocalApprovalStore).approve(name, { user: "ann" });
    expect(await retry).toMatchObject({ approved: true, request: name });
    expect(store.list()).toHaveLength(1);
  });
});

describe("grants", () => {
  it("lets later operations of the same requester, rule and connection through until grantTtl", async () => {
    const { service, store } = start();
    const approval: Approval = { approvers: { groups: ["dba"] }, grantTtl: "1500ms", timeout: "300ms" };
    const held = service.request(input(approval));
    const name = (await pendingRequest(store)).metadata.name as string;
    (store as LocalApprovalStore).approve(name, { user: "ann" });
    expect(await held).toMatchObject({ approved: true, grant: false });
    await vi.waitFor(async () => expect((await store.get(name))?.status?.grantExpiresAt).toBeTruthy());

    const other = input(approval, {
      operation: { kind: "http", method: "POST", path: "/orders/7/refund", websocket: false },
    });
    expect(await service.request(other)).toEqual({
      approved: true,
      request: name,
      approvers: ["ann"],
      grant: true,
    });
    expect(service.grants()).toMatchObject([
      { request: name, rule: "orders-need-approval", approvers: ["ann"] },
    ]);
    // Another end user of the same agent has no grant.
    const kim = service.request(
      input(approval, { subject: { serviceAccount: workload.subject, user: "kim", groups: [] } }),
    );
    expect(await kim).toMatchObject({ approved: false, status: "expired" });

    const end = Date.parse(service.grants()[0]?.expiresAt ?? "");
    await new Promise((r) => setTimeout(r, end - Date.now() + 50));
    expect(service.grants()).toEqual([]);
    expect(await service.request(other)).toMatchObject({ approved: false, status: "expired" });
  });
});

describe("async mode", () => {
  it("answers at once with the request; a retry finds it and passes once approved", async () => {
    const { service, store } = start();
    const approval: Approval = { approvers: { groups: ["dba"] }, mode: "async" };
    const first = await service.request(input(approval, { reason: "refund for ticket 42" }));
    expect(first).toMatchObject({ approved: false, status: "pending" });
    expect(first.message).toMatch(new RegExp(`kubectl airlock approve ${first.request}`));
    const second = await service.request(input(approval));
    expect(second).toMatchObject({ approved: false, status: "pending", request: first.request });
    expect(store.list()).toHaveLength(1);
    expect(store.list()[0]?.spec.reason).toBe("refund for ticket 42");

    (store as LocalApprovalStore).approve(first.request, { user: "ann" });
    expect(await service.request(input(approval))).toMatchObject({
      approved: true,
      request: first.request,
      grant: false,
    });
    // Used: the next retry asks again.
    const third = await service.request(input(approval));
    expect(third).toMatchObject({ approved: false, status: "pending" });
    expect(third.request).not.toBe(first.request);
    await vi.waitFor(async () =>
      expect((await store.get(first.request))?.status?.conditions?.[0]).toMatchObject({
        type: "Consumed",
        status: "True",
      }),
    );
  });

  it("keeps answering denied for a denied operation until the request would have expired", async () => {
    const { service, store } = start();
    const approval: Approval = { approvers: { groups: ["dba"] }, mode: "async" };
    const first = await service.request(input(approval));
    (store as LocalApprovalStore).deny(first.request, { user: "bob", reason: "no" });
    await new Promise((r) => setTimeout(r, 10));
    expect(await service.request(input(approval))).toMatchObject({
      status: "denied",
      request: first.request,
    });
  });
});

describe("trust and masking", () => {
  it("masks secrets and personal data in the summary and the reason", async () => {
    const { service, store } = start();
    const approval: Approval = { approvers: { groups: ["dba"] }, mode: "async" };
    await service.request(
      input(approval, {
        operation: { kind: "http", method: "GET", path: "/users/jane.doe@example.com", websocket: false },
        reason: "token ghp_abcdefghijklmnopqrstuvwxyz0123456789\u0007 for jane.doe@example.com",
      }),
    );
    const req = store.list()[0] as AccessRequest;
    expect(req.spec.operation.summary).toBe("GET /users/[REDACTED:email]");
    expect(JSON.stringify(req)).not.toContain("jane");
    // Another user's record masks to the same summary, but is not the same operation.
    const other = await service.request(
      input(approval, {
        operation: { kind: "http", method: "GET", path: "/users/joe@example.com", websocket: false },
      }),
    );
    expect(other.request).not.toBe(req.metadata.name);
    expect(req.spec.reason).not.toMatch(/ghp_|jane\.doe/);
    expect(req.spec.reason).not.toContain("\u0007");
  });

  it("ignores requests it did not create, whatever they say", async () => {
    const { service, store } = start();
    const approval: Approval = { approvers: { groups: ["dba"] }, mode: "async" };
    const first = await service.request(input(approval));
    const mine = (await store.get(first.request)) as AccessRequest;
    // A look-alike request for the same operation, pre-approved: not this sidecar's.
    const fake = await store.create({
      ...mine,
      metadata: { name: "fake", labels: mine.metadata.labels ?? {} },
    });
    (store as LocalApprovalStore).approve(fake.metadata.name as string, { user: "ann" });
    expect(await service.request(input(approval))).toMatchObject({ approved: false, request: first.request });
  });

  it("refuses when the approvals cannot be trusted", async () => {
    const { service, store } = start({ verifyTrust: async () => "the admission policy is not installed" });
    const outcome = await service.request(input({ approvers: { groups: ["dba"] } }));
    expect(outcome).toMatchObject({ approved: false, status: "unavailable", message: /not installed/ });
    expect(store.list()).toHaveLength(0);
  });
});

describe("outages and restarts", () => {
  it("fails closed at the timeout when no request can be created", async () => {
    const store = createLocalStore({ namespace: "agents" });
    store.create = async () => {
      throw Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6443"), { code: "ECONNREFUSED" });
    };
    const { service, registry } = start({ store, retryInitialMs: 20 });
    const t0 = Date.now();
    const outcome = await service.request(input({ approvers: { groups: ["dba"] }, timeout: "400ms" }));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(380);
    expect(outcome).toMatchObject({ approved: false, status: "unavailable" });
    expect(outcome.message).toMatch(
      /approval service unreachable.*within 400ms.*ECONNREFUSED.*not performed/,
    );
    expect(await metric(registry, "airlock_approval_decisions_total")).toMatch(
      /outcome="unavailable",group="dba"} 1/,
    );
  });

  it("fails at once when the store refuses the request for good", async () => {
    const store = createLocalStore({ namespace: "agents" });
    store.create = async () => {
      throw new RejectedError(403, "accessrequests is forbidden");
    };
    const { service } = start({ store });
    const outcome = await service.request(input({ approvers: { groups: ["dba"] } }));
    expect(outcome).toMatchObject({ status: "unavailable", message: /refused.*forbidden/ });
  });

  it("fails closed when the store cannot confirm the request at its expiry", async () => {
    const { service, store } = start();
    const held = service.request(input({ approvers: { groups: ["dba"] }, timeout: "200ms" }));
    await pendingRequest(store);
    store.get = async () => {
      throw new Error("socket hang up");
    };
    const outcome = await held;
    expect(outcome).toMatchObject({ approved: false, status: "unavailable" });
    expect(outcome.message).toMatch(/unreachable.*could not confirm it before it expired: socket hang up/);
  });

  it("marks a request that timed out unreachable Expired once the store is back, however long the outage", async () => {
    const { service, store } = start();
    const held = service.request(input({ approvers: { groups: ["dba"] }, timeout: "200ms" }));
    const name = (await pendingRequest(store)).metadata.name as string;
    const realGet = store.get.bind(store);
    let down = true;
    store.get = async (n) => {
      if (down) throw new Error("socket hang up");
      return realGet(n);
    };
    vi.useFakeTimers();
    try {
      await vi.advanceTimersByTimeAsync(300);
      expect(await held).toMatchObject({ approved: false, status: "unavailable" });
      await vi.advanceTimersByTimeAsync(10 * 60_000); // a 10-minute outage
      expect(store.list()[0]?.status?.phase ?? "Pending").toBe("Pending");
      down = false;
      await vi.advanceTimersByTimeAsync(60_000); // retries at most a minute apart
      expect((await realGet(name))?.status?.phase).toBe("Expired");
    } finally {
      vi.useRealTimers();
    }
  });

  it("re-attaches to pending requests after a restart (file-persisted store)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "airlock-approvals-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "approvals.json");
    const first = start({ store: createLocalStore({ namespace: "agents", file }) });
    const ac = new AbortController();
    const held = first.service.request(input({ approvers: { groups: ["dba"] } }, { signal: ac.signal }));
    const name = (await pendingRequest(first.store)).metadata.name as string;
    ac.abort();
    await held;
    await first.service.close();

    const store = createLocalStore({ namespace: "agents", file });
    const second = start({ store });
    await second.service.ready;
    expect(second.service.pending().map((o) => o.metadata.name)).toEqual([name]);
    const retried = second.service.request(input({ approvers: { groups: ["dba"] } }));
    await new Promise((r) => setTimeout(r, 20));
    store.approve(name, { user: "ann" });
    expect(await retried).toMatchObject({ approved: true, request: name, approvers: ["ann"] });
  });
});
