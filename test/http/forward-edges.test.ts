// Edges of the plain forward path (node's http.request on the connection's keep-alive agent):
// upstream idle timeout, an upstream that dies mid-body, request framing the upstream receives,
// the query forwarded untouched, and the upstream request cut when the agent leaves.
import { createServer, request, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
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

const SECRET = "sk-edge-2b9e41";

function spec(port: number): AgentAccessPolicySpec {
  return {
    connections: [
      {
        name: "api",
        protocol: "http",
        target: { host: "127.0.0.1", port },
        tls: { mode: "disable" },
        credentials: { secretRef: { name: "api-token" } },
      },
    ],
    rules: [
      {
        name: "all",
        action: "allow",
        match: { http: { methods: ["GET", "POST", "DELETE", "OPTIONS"], paths: ["/**"] } },
      },
    ],
  };
}

let upstream: Upstream;
const sidecars: Sidecar[] = [];

async function sidecar(port: number, guard = {}): Promise<{ sc: Sidecar; base: string }> {
  const sc = await startSidecar({
    policies: [policy("edges", spec(port))],
    secrets: { "api-token": { token: SECRET } },
    guard,
  });
  sidecars.push(sc);
  return { sc, base: await sc.listen("api") };
}

beforeAll(async () => {
  upstream = await startUpstream((req, res) => {
    if (req.url === "/hang") return; // never answers
    if (req.url === "/slow") return void setTimeout(() => json(res, 200, { ok: true }), 400);
    json(res, 200, {
      url: req.url,
      method: req.method,
      length: req.headers["content-length"] ?? null,
      chunked: req.headers["transfer-encoding"] ?? null,
      authorization: req.headers.authorization ?? null,
    });
  });
});

afterAll(() => upstream.close());

afterEach(async () => {
  for (const sc of sidecars) for (const e of sc.audit) expectAuditShape(e);
  while (sidecars.length > 0) await sidecars.pop()?.close();
});

/** Raw HTTP/1.1 over a socket: what arrives before and after the body is sent. */
async function expectContinue(base: string, method: string) {
  const { connect } = await import("node:net");
  const url = new URL(base);
  const socket = connect(Number(url.port), url.hostname);
  let got = "";
  socket.on("data", (d: Buffer) => {
    got += d.toString();
  });
  await new Promise((r) => socket.once("connect", r));
  socket.write(
    `${method} /upload HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
  );
  // Wait for the first answer before sending the body, as curl and Go's client do.
  await until(() => got.length > 0);
  const first = got;
  if (first.startsWith("HTTP/1.1 100")) socket.write("hello");
  // The final answer is a JSON body: wait for its end, then hang up.
  await until(() => /HTTP\/1.1 [2-5]\d\d .*\r\n\r\n.*\}$/s.test(got));
  socket.destroy();
  return { first, all: got };
}

describe("plain forward path", () => {
  it("answers Expect: 100-continue only once the request is allowed", async () => {
    const { sc, base } = await sidecar(upstream.port);
    const allowed = await expectContinue(base, "POST");
    expect(allowed.first).toMatch(/^HTTP\/1.1 100 Continue\r\n/);
    expect(allowed.all).toMatch(/HTTP\/1.1 200 OK/);
    expect(allowed.all).toContain('"length":"5"');
    // PUT is not in the rule: refused before the agent is invited to send its body.
    const denied = await expectContinue(base, "PUT");
    expect(denied.first).toMatch(/^HTTP\/1.1 403 /);
    expect(denied.all).not.toContain("100 Continue");
    expect(sc.audit.map((e) => e.decision.action)).toEqual(["allow", "deny"]);
  });

  it("answers 504 and audits a timeout when the upstream goes idle", async () => {
    const { sc, base } = await sidecar(upstream.port, { upstreamTimeoutMs: 200 });
    const res = await send(`${base}/hang`);
    expect(res.status).toBe(504);
    expect(res.json()).toMatchObject({ error: "upstream_timeout" });
    expect(sc.audit).toHaveLength(1);
    expect(sc.audit[0]?.upstream?.error).toMatch(/^timeout:/);
    expect(await sc.metrics.registry.metrics()).toMatch(
      /airlock_upstream_errors_total\{connection="api",protocol="http",reason="timeout"\} 1/,
    );
  });

  it("cuts the agent's response when the upstream dies mid-body (never a clean short body)", async () => {
    const sockets = new Set<Socket>();
    const broken: Server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": "100000" });
      res.write(Buffer.alloc(1000, 1));
      setTimeout(() => res.socket?.destroy(), 50);
    });
    broken.on("connection", (s: Socket) => sockets.add(s));
    await new Promise<void>((r) => broken.listen(0, "127.0.0.1", () => r()));
    try {
      const { sc, base } = await sidecar((broken.address() as AddressInfo).port);
      await expect(send(`${base}/stream`)).rejects.toThrow();
      await until(() => sc.audit.length === 1 || undefined);
      expect(sc.audit[0]?.upstream).toEqual({ status: 200 });
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => broken.close(() => r()));
    }
  });

  it("forwards the query untouched and frames bodiless DELETE/OPTIONS with Content-Length: 0", async () => {
    const { base } = await sidecar(upstream.port);
    // Sent raw (a URL object would percent-encode the quotes on the client side already).
    const port = new URL(base).port;
    const raw = await new Promise<string>((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, path: `/a/./b//c?x='y'&z="w"&p=%2F`, agent: false },
        (res) => {
          let text = "";
          res.on("data", (c: Buffer) => {
            text += c.toString();
          });
          res.on("end", () => resolve(text));
        },
      );
      req.on("error", reject);
      req.end();
    });
    expect(JSON.parse(raw)).toMatchObject({
      url: `/a/b/c?x='y'&z="w"&p=%2F`,
      authorization: `Bearer ${SECRET}`,
    });
    for (const method of ["DELETE", "OPTIONS"]) {
      const r = await send(`${base}/items/1`, { method });
      expect(r.json()).toMatchObject({ method, length: "0", chunked: null });
    }
    const get = await send(`${base}/items/1`);
    expect(get.json()).toMatchObject({ method: "GET", length: null, chunked: null });
    const post = await send(`${base}/items`, { method: "POST", body: "abc" });
    expect(post.json()).toMatchObject({ method: "POST", length: "3" });
  });

  it("cuts the upstream request when the agent leaves, and audits it once", async () => {
    const { sc, base } = await sidecar(upstream.port);
    const before = upstream.connections;
    const controller = new AbortController();
    const pending = fetch(`${base}/slow`, { signal: controller.signal }).catch(() => undefined);
    await until(() => upstream.requests.some((r) => r.url === "/slow") || undefined);
    controller.abort();
    await pending;
    await sleep(600);
    expect(sc.audit).toHaveLength(1);
    expect(sc.audit[0]?.upstream).toEqual({ error: "agent_disconnected" });
    // The next request opens a fresh upstream connection: the cut one was not pooled.
    const res = await send(`${base}/after`);
    expect(res.status).toBe(200);
    expect(upstream.connections).toBe(before + 2);
  });
});
