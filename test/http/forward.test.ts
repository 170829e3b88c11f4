// The HTTP guard on a per-connection listener, against a real upstream on loopback: credentials,
// decisions, path bypasses, identity, body limits, keep-alive, approvals, audit.
import { Agent } from "node:http";
import { connect } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import type { ApprovalGate, ApprovalInput } from "../../sidecar/src/protocols/http/index.ts";
import { makeKey, signToken, TestIdp, type TestKey } from "../fixtures/oidc-provider.ts";
import {
  expectAuditShape,
  json,
  policy,
  type Sidecar,
  send,
  sleep,
  startSidecar,
  startUpstream,
  type Upstream,
  until,
} from "./harness.ts";

const SECRET = "sk-upstream-7f3a9c1e5b";
const AGENT_TOKEN = "agent-held-token-d41d8c";

function spec(port: number, issuer?: TestIdp): AgentAccessPolicySpec {
  return {
    ...(issuer
      ? { identity: { oidc: { issuer: issuer.url, audiences: ["airlock"], jwksUri: issuer.jwksUri } } }
      : {}),
    connections: [
      {
        name: "api",
        protocol: "http",
        target: { host: "127.0.0.1", port },
        tls: { mode: "disable" },
        credentials: { secretRef: { name: "api-token" } },
        limits: { maxRequestBodyBytes: 1024, maxResponseBodyBytes: 1 << 20 },
      },
    ],
    rules: [
      {
        name: "read-api",
        action: "allow",
        match: { http: { methods: ["GET", "HEAD"], paths: ["/api/**"] } },
      },
      {
        name: "write-items",
        action: "allow",
        match: { http: { methods: ["POST", "PUT", "DELETE"], paths: ["/api/items", "/api/items/**"] } },
      },
      {
        name: "alice-reports",
        action: "allow",
        subjects: { users: ["alice"] },
        match: { http: { methods: ["GET"], paths: ["/reports/**"] } },
      },
      { name: "no-admin", action: "deny", match: { http: { paths: ["/admin/**"] } } },
      {
        name: "export-needs-approval",
        action: "requireApproval",
        match: { http: { methods: ["POST"], paths: ["/api/export"] } },
        approval: { approvers: { groups: ["leads"] } },
      },
    ],
  };
}

let upstream: Upstream;
let idp: TestIdp;
let key: TestKey;
const sidecars: Sidecar[] = [];

async function sidecar(opts: { gate?: ApprovalGate } = {}): Promise<{ sc: Sidecar; base: string }> {
  const sc = await startSidecar({
    policies: [policy("guarded", spec(upstream.port, idp))],
    secrets: { "api-token": { token: SECRET } },
    guard: opts.gate ? { approvals: opts.gate } : {},
  });
  sidecars.push(sc);
  return { sc, base: await sc.listen("api") };
}

beforeAll(async () => {
  key = await makeKey("RS256", "k1");
  idp = await TestIdp.start([key]);
  upstream = await startUpstream((req, res) => {
    if (req.url?.startsWith("/slow")) return void setTimeout(() => json(res, 200, { ok: true }), 200);
    json(res, 200, { path: req.url, method: req.method, bytes: req.body.length });
  });
});

afterAll(async () => {
  await upstream.close();
  await idp.stop();
});

afterEach(async () => {
  for (const sc of sidecars) {
    // Every event of every test carries the schema fields, and the logged copies are marked.
    for (const e of sc.audit) expectAuditShape(e);
    const logged = sc
      .logs()
      .split("\n")
      .filter((l) => l.includes('"audit":true'));
    expect(logged).toHaveLength(sc.audit.length);
  }
  while (sidecars.length > 0) await sidecars.pop()?.close();
});

const now = () => Math.floor(Date.now() / 1000);

describe("allowed requests", () => {
  it("forwards with the sidecar's credential, dropping the agent's own and hop-by-hop headers", async () => {
    const { sc, base } = await sidecar();
    const before = upstream.requests.length;
    const res = await send(`${base}/api//items/./42?expand=owner&x=%2F`, {
      headers: {
        authorization: `Bearer ${AGENT_TOKEN}`,
        "x-api-key": AGENT_TOKEN,
        "proxy-authorization": `Basic ${AGENT_TOKEN}`,
        connection: "keep-alive, x-hop",
        "x-hop": "dropped",
        "x-trace": "kept",
      },
    });
    expect(res.status).toBe(200);
    const got = upstream.requests[before];
    expect(got?.url).toBe("/api/items/42?expand=owner&x=%2F");
    expect(got?.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(got?.headers["x-api-key"]).toBeUndefined();
    expect(got?.headers["proxy-authorization"]).toBeUndefined();
    expect(got?.headers["x-hop"]).toBeUndefined();
    expect(got?.headers["x-trace"]).toBe("kept");
    expect(got?.headers.host).toBe(`127.0.0.1:${upstream.port}`);

    const event = await until(() => sc.audit.at(-1));
    expectAuditShape(event);
    expect(event).toMatchObject({
      connection: "api",
      protocol: "http",
      identity: { serviceAccount: "system:serviceaccount:agents:agent", pod: "agent-0", namespace: "agents" },
      operation: { kind: "http", method: "GET", path: "/api/items/42", websocket: false },
      decision: { action: "allow", policy: "agents/guarded", rule: "read-api" },
      upstream: { status: 200 },
    });
    expect(event.durationMs).toBeGreaterThanOrEqual(0);
    const serialized = JSON.stringify(sc.audit) + sc.logs();
    expect(serialized).not.toContain(SECRET);
    expect(serialized).not.toContain(AGENT_TOKEN);
    expect(sc.logs()).toContain('"audit":true');

    const metrics = await sc.metrics.registry.metrics();
    expect(metrics).toMatch(
      /airlock_operations_total\{connection="api",protocol="http",decision="allow"\} 1/,
    );
    expect(metrics).toMatch(/airlock_upstream_duration_seconds_count\{connection="api",protocol="http"\} 1/);
    expect(metrics).toMatch(/airlock_decision_duration_seconds_count\{protocol="http"\} 1/);
  });

  it("reuses keep-alive connections on both sides", async () => {
    const { sc, base } = await sidecar();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const connectionsBefore = upstream.connections;
    const a = await send(`${base}/api/one`, { agent });
    const b = await send(`${base}/api/two`, { agent });
    const c = await send(`${base}/api/three`, { agent });
    expect([a.status, b.status, c.status]).toEqual([200, 200, 200]);
    expect(b.socket).toBe(a.socket);
    expect(c.socket).toBe(a.socket);
    expect(upstream.connections - connectionsBefore).toBe(1);
    expect(await sc.metrics.registry.metrics()).toMatch(
      /airlock_active_sessions\{connection="api",protocol="http"\} 1/,
    );
    agent.destroy();
    // Exactly one audit event per request, all in the one agent session.
    expect(sc.audit).toHaveLength(3);
    const sessions = new Set(sc.audit.map((e) => e.session));
    expect(sessions.size).toBe(1);
  });

  it("passes request bodies under the limit, chunked or not", async () => {
    const { base } = await sidecar();
    const fixed = await send(`${base}/api/items`, { method: "POST", body: "x".repeat(1000) });
    expect(fixed.json()).toMatchObject({ bytes: 1000 });
    const chunked = await send(`${base}/api/items`, {
      method: "PUT",
      body: async function* () {
        for (let i = 0; i < 10; i++) {
          yield Buffer.from("y".repeat(100));
          await sleep(2);
        }
      },
    });
    expect(chunked.json()).toMatchObject({ bytes: 1000 });
    // A chunked DELETE is re-framed with a Content-Length, not smuggled.
    const del = await send(`${base}/api/items/1`, {
      method: "DELETE",
      headers: { "transfer-encoding": "chunked" },
      body: async function* () {
        yield Buffer.from("abc");
      },
    });
    expect(del.json()).toMatchObject({ method: "DELETE", bytes: 3 });
    expect(upstream.requests.at(-1)?.headers["content-length"]).toBe("3");
  });
});

describe("refusals", () => {
  it("denies with a 403 JSON body naming the rule, without calling the upstream", async () => {
    const { sc, base } = await sidecar();
    const before = upstream.requests.length;
    const res = await send(`${base}/admin/users`);
    expect(res.status).toBe(403);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(res.json()).toEqual({
      error: "denied",
      policy: "agents/guarded",
      rule: "no-admin",
      reason: "denied by rule no-admin",
    });
    expect(upstream.requests.length).toBe(before);
    expect(sc.audit.at(-1)).toMatchObject({ decision: { action: "deny", rule: "no-admin" } });
    expect(sc.audit.at(-1)?.upstream).toBeUndefined();
  });

  it("denies by default when no rule matches", async () => {
    const { base } = await sidecar();
    const res = await send(`${base}/api/items`, { method: "PATCH" });
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({
      error: "denied",
      rule: null,
      reason: "no rule allows this operation (default deny)",
    });
  });

  it.each([
    "/api/../admin/users",
    "/api/%2e%2e/admin/users",
    "/api/%2E%2E%2Fadmin/users",
    "/%61dmin/users",
    "//admin/users",
    "/api/..;/admin/users",
    "/api/./../admin/users",
  ])("does not let %s slip past the admin rule", async (path) => {
    const { sc, base } = await sidecar();
    const before = upstream.requests.length;
    const res = await send(`${base}${path}`);
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ error: "denied", rule: "no-admin" });
    expect(upstream.requests.length).toBe(before);
    expect(sc.audit.at(-1)?.operation).toMatchObject({ path: "/admin/users" });
  });

  it.each(["/api/%252e%252e/admin", "/api/a%5Cb", "/api/%zz"])(
    "refuses the malformed path %s with 400",
    async (path) => {
      const { sc, base } = await sidecar();
      const before = upstream.requests.length;
      const res = await send(`${base}${path}`);
      expect(res.status).toBe(400);
      expect(res.json()).toMatchObject({ error: "bad_path" });
      expect(upstream.requests.length).toBe(before);
      expect(sc.audit.at(-1)).toMatchObject({ decision: { action: "deny" } });
    },
  );

  it("refuses absolute-form targets on a connection listener", async () => {
    const { base } = await sidecar();
    const res = await send("http://elsewhere.example/api/x", { proxy: base });
    expect(res.status).toBe(400);
    expect(res.json()).toMatchObject({ error: "bad_target" });
  });

  it("refuses a declared body over the limit with 413 before forwarding", async () => {
    const { sc, base } = await sidecar();
    const before = upstream.requests.length;
    const res = await send(`${base}/api/items`, { method: "POST", body: "z".repeat(2048) });
    expect(res.status).toBe(413);
    expect(res.json()).toMatchObject({ error: "request_body_too_large", limit: 1024 });
    expect(upstream.requests.length).toBe(before);
    expect(sc.audit.at(-1)).toMatchObject({ upstream: { error: "request_body_too_large" } });
  });

  it("cuts a chunked body that grows over the limit and aborts the upstream request", async () => {
    const { sc, base } = await sidecar();
    const before = upstream.requests.length;
    const res = await send(`${base}/api/items`, {
      method: "POST",
      body: async function* () {
        for (let i = 0; i < 40; i++) {
          yield Buffer.from("w".repeat(100));
          await sleep(2);
        }
      },
    }).catch((err: Error) => err);
    // The sidecar answers 413 and closes; a client still writing may see the reset instead.
    if (!(res instanceof Error)) {
      expect(res.status).toBe(413);
      expect(res.json()).toMatchObject({ error: "request_body_too_large" });
    }
    await sleep(100);
    expect(upstream.requests.length).toBe(before); // the upstream never got a complete request
    expect(sc.audit.filter((e) => e.upstream?.error === "request_body_too_large")).toHaveLength(1);
  });
});

describe("end-user identity", () => {
  const token = (claims: Record<string, unknown> = {}) =>
    signToken(key, {
      iss: idp.url,
      aud: "airlock",
      sub: "alice",
      groups: ["analysts"],
      iat: now(),
      exp: now() + 300,
      ...claims,
    });

  it("verifies X-Airlock-Identity, decides for the user and strips the header", async () => {
    const { sc, base } = await sidecar();
    const jwt = await token();
    const before = upstream.requests.length;
    const res = await send(`${base}/reports/q3`, { headers: { "x-airlock-identity": `Bearer ${jwt}` } });
    expect(res.status).toBe(200);
    expect(upstream.requests[before]?.headers["x-airlock-identity"]).toBeUndefined();
    expect(sc.audit.at(-1)).toMatchObject({
      identity: { user: "alice", groups: ["analysts"] },
      decision: { action: "allow", rule: "alice-reports" },
    });
    // Without the token the same request is the bare service account's, and denied.
    expect((await send(`${base}/reports/q3`)).status).toBe(403);
    expect(JSON.stringify(sc.audit) + sc.logs()).not.toContain(jwt);
  });

  it.each([
    ["garbage", async () => "not a jwt", "malformed"],
    ["expired", async () => token({ exp: now() - 3600, iat: now() - 7200 }), "expired"],
    ["wrong audience", async () => token({ aud: "someone-else" }), "wrong_audience"],
    ["wrong issuer", async () => token({ iss: "http://127.0.0.1:1/other" }), "wrong_issuer"],
  ])("refuses a %s token with 401 and its code, never echoing it", async (_name, make, code) => {
    const { sc, base } = await sidecar();
    const jwt = await make();
    const before = upstream.requests.length;
    const res = await send(`${base}/api/items`, { headers: { "x-airlock-identity": jwt } });
    expect(res.status).toBe(401);
    expect(res.json()).toMatchObject({ error: "invalid_identity", code });
    expect(res.text).not.toContain(jwt);
    expect(upstream.requests.length).toBe(before);
    expect(sc.audit.at(-1)).toMatchObject({
      decision: { action: "deny", reason: `identity token refused (${code})` },
    });
    expect(JSON.stringify(sc.audit) + sc.logs()).not.toContain(jwt);
  });
});

describe("approvals", () => {
  it("fails closed without an approval service", async () => {
    const { sc, base } = await sidecar();
    const res = await send(`${base}/api/export`, { method: "POST", body: "{}" });
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({
      error: "approval_unavailable",
      policy: "agents/guarded",
      rule: "export-needs-approval",
    });
    expect(sc.audit.at(-1)).toMatchObject({ decision: { action: "requireApproval" } });
  });

  it("forwards once the gate approves, and records the approval", async () => {
    const seen: ApprovalInput[] = [];
    const gate: ApprovalGate = {
      async request(input) {
        seen.push(input);
        await sleep(20);
        return { approved: true, request: "areq-123", approvers: ["lead@example.com"] };
      },
    };
    const { sc, base } = await sidecar({ gate });
    const res = await send(`${base}/api/export`, { method: "POST", body: "{}" });
    expect(res.status).toBe(200);
    expect(seen[0]).toMatchObject({
      connection: "api",
      decision: { action: "requireApproval", rule: "export-needs-approval" },
      operation: { kind: "http", method: "POST", path: "/api/export" },
    });
    expect(sc.audit.at(-1)).toMatchObject({
      decision: { action: "requireApproval" },
      approval: { request: "areq-123", approvers: ["lead@example.com"] },
      upstream: { status: 200 },
    });
  });

  it("tells the agent at once that it waits: a 103 with X-Airlock-Approval-* before the answer", async () => {
    const gate: ApprovalGate = {
      async request(input) {
        input.onWaiting?.({
          request: "areq-77",
          approveHint: "kubectl airlock approve areq-77 -n agents",
          expiresAt: "2026-12-03T10:00:00.000Z",
        });
        await sleep(50);
        return { approved: true, request: "areq-77", approvers: ["lead@example.com"] };
      },
    };
    const { base } = await sidecar({ gate });
    const { hostname, port } = new URL(base);
    const raw = await new Promise<string>((resolve, reject) => {
      const s = connect(Number(port), hostname, () =>
        s.write(`POST /api/export HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`),
      );
      let out = "";
      s.on("data", (d: Buffer) => {
        out += d.toString("latin1");
      });
      s.on("end", () => resolve(out));
      s.on("error", reject);
    });
    const early = raw.indexOf("HTTP/1.1 103");
    expect(early).toBe(0);
    const head = raw.slice(0, raw.indexOf("\r\n\r\n"));
    expect(head).toMatch(/x-airlock-approval-request: areq-77/i);
    expect(head).toMatch(
      /link: <urn:airlock:access-request:areq-77>; rel="https:\/\/airlock.dev\/rels\/approval-pending"/i,
    );
    expect(head).toMatch(/x-airlock-approval-hint: kubectl airlock approve areq-77 -n agents/i);
    expect(raw.indexOf("HTTP/1.1 200")).toBeGreaterThan(early);
  });

  it("answers approval_required naming the request while it is pending", async () => {
    const gate: ApprovalGate = {
      request: async () => ({ approved: false, request: "areq-9", status: "pending" }),
    };
    const { base } = await sidecar({ gate });
    const res = await send(`${base}/api/export`, { method: "POST", body: "{}" });
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ error: "approval_required", request: "areq-9", status: "pending" });
  });
});

describe("upstream failures", () => {
  it("answers 502 and audits when the upstream is down", async () => {
    const { sc, base } = await sidecar();
    const down = await startUpstream(() => undefined);
    await down.close();
    sc.setPolicies([policy("guarded", spec(down.port, idp))]);
    const res = await send(`${base}/api/x`);
    expect(res.status).toBe(502);
    expect(res.json()).toMatchObject({ error: "upstream_unavailable", reason: "connect:ECONNREFUSED" });
    expect(sc.audit.at(-1)).toMatchObject({ upstream: { error: "connect:ECONNREFUSED" } });
    expect(await sc.metrics.registry.metrics()).toMatch(
      /airlock_upstream_errors_total\{connection="api",protocol="http",reason="connect"\} 1/,
    );
  });

  it("answers 502 when the credential Secret is missing, never forwarding without it", async () => {
    const { sc, base } = await sidecar();
    const { rm } = await import("node:fs/promises");
    await rm(`${sc.secretsDir}/api-token`, { recursive: true });
    const before = upstream.requests.length;
    const res = await send(`${base}/api/x`);
    expect(res.status).toBe(502);
    expect(res.json()).toMatchObject({ error: "credential_unavailable" });
    expect(upstream.requests.length).toBe(before);
  });

  it("audits exactly once when the agent leaves before the answer", async () => {
    const { sc, base } = await sidecar();
    const controller = new AbortController();
    const pending = fetch(`${base}/slow`, { signal: controller.signal }).catch(() => undefined);
    await sleep(50);
    controller.abort();
    await pending;
    await sleep(300);
    const events = sc.audit.filter((e) => e.operation.kind === "http" && e.operation.path === "/slow");
    expect(events).toHaveLength(1);
  });
});
