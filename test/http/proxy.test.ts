// The explicit forward proxy (HTTP_PROXY): absolute-form requests map to connections by host and
// port; unknown destinations are refused; CONNECT tunnels are judged at host level only.
import "reflect-metadata";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { createCA, issueServingCert } from "../envtest/pki.ts";
import {
  json,
  policy,
  type Sidecar,
  send,
  startSidecar,
  startUpstream,
  type Upstream,
  until,
} from "./harness.ts";

let plain: Upstream;
let secure: Upstream;
let caPem: string;
let sc: Sidecar;
let proxyUrl: string;

function spec(): AgentAccessPolicySpec {
  return {
    connections: [
      {
        name: "plain",
        protocol: "http",
        target: { host: "127.0.0.1", port: plain.port, aliases: ["plain.internal.test"] },
        tls: { mode: "disable" },
        credentials: {
          secretRef: { name: "plain-token" },
          http: { header: "X-Api-Key", key: "k", format: "{value}" },
        },
      },
      {
        name: "tunnelled",
        protocol: "http",
        target: { host: "localhost", port: secure.port },
        tls: { mode: "passthrough" },
      },
      {
        name: "no-tunnel",
        protocol: "http",
        target: { host: "no-tunnel.internal.test", port: 443 },
      },
      {
        name: "no-rules",
        protocol: "http",
        target: { host: "no-rules.internal.test", port: 443 },
      },
    ],
    rules: [
      { name: "plain-read", action: "allow", connections: ["plain"], match: { http: { methods: ["GET"] } } },
      {
        name: "tunnel-ok",
        action: "allow",
        connections: ["tunnelled"],
        match: { http: { methods: ["CONNECT"] } },
      },
      {
        name: "no-tunnel-paths",
        action: "allow",
        connections: ["no-tunnel"],
        match: { http: { methods: ["GET"], paths: ["/ok/**"] } },
      },
    ],
  };
}

beforeAll(async () => {
  const ca = await createCA("airlock-proxy-test-ca");
  caPem = ca.certPem;
  const serving = await issueServingCert(ca, ["localhost", "127.0.0.1"]);
  plain = await startUpstream((req, res) =>
    json(res, 200, { url: req.url, key: req.headers["x-api-key"] ?? null }),
  );
  secure = await startUpstream(
    (req, res) => json(res, 200, { tunnelled: true, auth: req.headers.authorization ?? null }),
    { key: serving.keyPem, cert: serving.certPem },
  );
  sc = await startSidecar({
    policies: [policy("proxy", spec())],
    secrets: { "plain-token": { k: "plain-key-123" } },
  });
  proxyUrl = await sc.listenProxy();
});

afterAll(async () => {
  await sc.close();
  await plain.close();
  await secure.close();
});

/** Sends CONNECT and returns the status line plus the socket, still open on success. */
function connectVia(
  authority: string,
  headers: Record<string, string> = {},
): Promise<{ head: string; socket: Socket; body: string }> {
  const { hostname, port } = new URL(proxyUrl);
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: hostname, port: Number(port) });
    socket.once("error", reject);
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${extra}\r\n`);
    let buf = "";
    const onData = (chunk: Buffer) => {
      buf += chunk.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.slice(0, end);
      if (head.startsWith("HTTP/1.1 200")) {
        socket.off("data", onData);
        resolve({ head, socket, body: "" });
      } else {
        socket.once("end", () => resolve({ head, socket, body: buf.slice(end + 4) }));
      }
    };
    socket.on("data", onData);
  });
}

describe("absolute-form requests", () => {
  it("maps host:port to a connection and injects its credential", async () => {
    const res = await send(`http://127.0.0.1:${plain.port}/items?q=1`, {
      proxy: proxyUrl,
      headers: { "x-api-key": "agent-own-key" },
    });
    expect(res.status).toBe(200);
    expect(res.json()).toEqual({ url: "/items?q=1", key: "plain-key-123" });
    expect(sc.audit.at(-1)).toMatchObject({
      connection: "plain",
      decision: { action: "allow", rule: "plain-read" },
    });
  });

  it("maps aliases too", async () => {
    const res = await send(`http://plain.internal.test:${plain.port}/a`, { proxy: proxyUrl });
    expect(res.status).toBe(200);
  });

  it("refuses unknown destinations with 403, audit and metric", async () => {
    const res = await send("http://unknown.example.com/", { proxy: proxyUrl });
    expect(res.status).toBe(403);
    expect(res.json()).toMatchObject({ error: "unknown_destination", destination: "unknown.example.com:80" });
    expect(sc.audit.at(-1)).toMatchObject({
      connection: "",
      operation: { kind: "tcp", destination: "unknown.example.com:80" },
      decision: { action: "deny" },
    });
    expect(await sc.metrics.registry.metrics()).toMatch(/airlock_unknown_destination_total [1-9]/);
  });

  it("refuses credentials in the request target", async () => {
    const res = await send(`http://user:pw@127.0.0.1:${plain.port}/`, { proxy: proxyUrl });
    expect(res.status).toBe(400);
    expect(res.text).not.toContain("pw");
  });
});

describe("CONNECT", () => {
  it("relays an allowed tunnel to a passthrough connection; the agent's own TLS reaches the upstream, audited as host-level when it ends", async () => {
    const before = sc.audit.length;
    const { head, socket } = await connectVia(`localhost:${secure.port}`);
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    const tls = tlsConnect({ socket, ca: caPem, servername: "localhost" });
    const reply = await new Promise<string>((resolve, reject) => {
      let out = "";
      tls.on("data", (c: Buffer) => {
        out += c.toString("utf8");
      });
      tls.on("end", () => resolve(out));
      tls.on("error", reject);
      tls.write(
        "GET /inside HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer agent-own\r\nConnection: close\r\n\r\n",
      );
    });
    expect(reply).toMatch(/^HTTP\/1\.1 200/);
    // Inside the tunnel the sidecar can neither inject nor strip: the agent's header arrives.
    expect(reply).toContain('"auth":"Bearer agent-own"');
    const event = await until(() => sc.audit.slice(before).find((e) => e.connection === "tunnelled"));
    expect(event).toMatchObject({
      operation: { kind: "http-tunnel", sni: "localhost" },
      decision: { action: "allow", rule: "tunnel-ok" },
      upstream: { status: "connected" },
    });
    expect(event.decision.reason).toContain("host-level");
    const bytes = (event.operation as { bytes?: { fromAgent: number; fromUpstream: number } }).bytes;
    // A ClientHello and a request one way; a certificate chain and a response the other.
    expect(bytes?.fromAgent).toBeGreaterThan(200);
    expect(bytes?.fromUpstream).toBeGreaterThan(500);
  });

  it("refuses a tunnel to a connection where no rule could admit anything", async () => {
    const { head, body } = await connectVia("no-rules.internal.test:443");
    expect(head).toMatch(/^HTTP\/1\.1 403/);
    expect(JSON.parse(body)).toMatchObject({ error: "denied" });
    expect(sc.audit.at(-1)).toMatchObject({ connection: "no-rules", decision: { action: "deny" } });
  });

  it("cuts the agent's own TLS in a tunnel that only path rules cover (audited as a denied tunnel)", async () => {
    const { head, socket } = await connectVia("no-tunnel.internal.test:443");
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    const before = sc.audit.length;
    const tls = tlsConnect({ socket, servername: "no-tunnel.internal.test", rejectUnauthorized: false });
    const ended = await new Promise<string>((resolve) => {
      tls.on("error", (e: Error) => resolve(e.message));
      tls.on("close", () => resolve("closed"));
      tls.on("secureConnect", () => resolve("handshake completed"));
    });
    expect(ended).not.toBe("handshake completed");
    const event = await until(() => (sc.audit.length > before ? sc.audit.at(-1) : undefined));
    expect(event).toMatchObject({
      connection: "no-tunnel",
      operation: { kind: "http-tunnel" },
      decision: { action: "deny" },
    });
  });

  /** Plain HTTP/1.1 requests written into an open tunnel; the raw replies. */
  async function inside(socket: Socket, requests: string[]): Promise<string> {
    const reply = new Promise<string>((resolve) => {
      let out = "";
      socket.on("data", (c: Buffer) => {
        out += c.toString("utf8");
      });
      socket.on("close", () => resolve(out));
    });
    socket.write(requests.join(""));
    return reply;
  }

  it("serves plain HTTP inside a tunnel with the full HTTP guard: credentials, path rules, audit per request", async () => {
    const { head, socket } = await connectVia(`127.0.0.1:${plain.port}`);
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    const before = sc.audit.length;
    const reply = await inside(socket, [
      `GET /items?q=2 HTTP/1.1\r\nHost: 127.0.0.1:${plain.port}\r\nX-Api-Key: agent-own-key\r\n\r\n`,
      `DELETE /items/1 HTTP/1.1\r\nHost: 127.0.0.1:${plain.port}\r\nConnection: close\r\n\r\n`,
    ]);
    const [first, second] = reply.split(/(?=HTTP\/1\.1 )/);
    expect(first).toMatch(/^HTTP\/1\.1 200/);
    // The sidecar's credential, not the agent's: the request was guarded, not spliced.
    expect(first).toContain('"key":"plain-key-123"');
    expect(second).toMatch(/^HTTP\/1\.1 403/);
    const events = await until(() => (sc.audit.length >= before + 2 ? sc.audit.slice(before) : undefined));
    // One event per request, in completion order (the denial needs no upstream, so it may be first).
    const method = (e: (typeof events)[number]) => ("method" in e.operation ? e.operation.method : "");
    events.sort((a, b) => method(b).localeCompare(method(a)));
    expect(events).toMatchObject([
      { connection: "plain", operation: { kind: "http", method: "GET" }, decision: { action: "allow" } },
      { connection: "plain", operation: { kind: "http", method: "DELETE" }, decision: { action: "deny" } },
    ]);
  });

  it("relays nothing but the agent's own TLS to a passthrough connection: plain HTTP inside is cut, and audited", async () => {
    const before = sc.audit.length;
    const { head, socket } = await connectVia(`localhost:${secure.port}`);
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    const reply = await inside(socket, [
      `GET /inside HTTP/1.1\r\nHost: localhost:${secure.port}\r\nConnection: close\r\n\r\n`,
    ]);
    expect(reply).toBe("");
    const event = await until(() => sc.audit.slice(before).find((e) => e.connection === "tunnelled"));
    expect(event).toMatchObject({
      operation: { kind: "http-tunnel" },
      decision: { action: "deny", reason: expect.stringMatching(/relays only the agent's own TLS/) },
      upstream: { error: "not_tls" },
    });
  });

  it("refuses a passthrough tunnel whose TLS names another server (SNI), before a byte reaches the upstream", async () => {
    const before = sc.audit.length;
    const { head, socket } = await connectVia(`localhost:${secure.port}`);
    expect(head).toMatch(/^HTTP\/1\.1 200/);
    const tls = tlsConnect({ socket, servername: "elsewhere.example.com", ca: caPem });
    const ended = await new Promise<string>((resolve) => {
      tls.on("error", (e: Error) => resolve(e.message));
      tls.on("close", () => resolve("closed"));
      tls.on("secureConnect", () => resolve("handshake completed"));
    });
    expect(ended).not.toBe("handshake completed");
    const event = await until(() => sc.audit.slice(before).find((e) => e.connection === "tunnelled"));
    expect(event).toMatchObject({
      operation: { kind: "http-tunnel", sni: "elsewhere.example.com" },
      decision: { action: "deny", reason: expect.stringMatching(/not a name of connection tunnelled/) },
      upstream: { error: "sni_mismatch" },
    });
  });

  it("refuses a tunnel to an unknown destination", async () => {
    const { head, body } = await connectVia("example.org:443");
    expect(head).toMatch(/^HTTP\/1\.1 403/);
    expect(JSON.parse(body)).toMatchObject({ error: "unknown_destination", destination: "example.org:443" });
  });
});
