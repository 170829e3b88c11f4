// Node's own proxy support as an unmodified agent uses it: NODE_USE_ENV_PROXY=1 with HTTP_PROXY
// pointing at the sidecar. Node's fetch opens a CONNECT tunnel even for http:// URLs, and
// node:http sends absolute-form requests; both must get the full HTTP guard (path rules,
// credentials, masking, one audit event per request), not host-level tunnel treatment.
import "reflect-metadata";
import { execFile } from "node:child_process";
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicySpec } from "../../api/src/index.ts";
import { json, policy, type Sidecar, startSidecar, startUpstream, type Upstream } from "./harness.ts";

const EMAIL = "jane.doe@example.com";
let upstream: Upstream;
let sc: Sidecar;
let proxyUrl: string;

function spec(port: number): AgentAccessPolicySpec {
  return {
    connections: [
      {
        name: "customers",
        protocol: "http",
        target: { host: "127.0.0.1", port, aliases: ["customers.internal.test"] },
        tls: { mode: "disable" },
        credentials: {
          secretRef: { name: "customers-token" },
          http: { header: "Authorization", key: "token", format: "Bearer {value}" },
        },
      },
    ],
    rules: [
      {
        name: "read-customers",
        action: "allow",
        match: { http: { methods: ["GET"], paths: ["/customers/**"] } },
      },
      { name: "no-admin", action: "deny", match: { http: { paths: ["/admin/**"] } } },
    ],
    masking: [{ name: "pii", detectors: ["email"], strategy: "redact" }],
  };
}

interface Outcome {
  status: number;
  body: string;
}

/** Runs `script` in a fresh Node with `proxy` as its environment proxy; it prints one JSON outcome. */
function agent(script: string, proxy = proxyUrl): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--input-type=module", "-e", script],
      {
        env: {
          PATH: process.env.PATH ?? "",
          NODE_USE_ENV_PROXY: "1",
          HTTP_PROXY: proxy,
          HTTPS_PROXY: proxy,
          NO_PROXY: "",
        },
        timeout: 20_000,
      },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`agent failed: ${err.message}\n${stderr}`));
        resolve(JSON.parse(stdout) as Outcome);
      },
    );
  });
}

const viaFetch = (url: string, method = "GET", proxy = proxyUrl) =>
  agent(
    `const r = await fetch(${JSON.stringify(url)}, { method: ${JSON.stringify(method)} });` +
      "console.log(JSON.stringify({ status: r.status, body: await r.text() }));",
    proxy,
  );

const viaHttp = (url: string, method = "GET", proxy = proxyUrl) =>
  agent(
    `import { request } from "node:http";` +
      `const req = request(${JSON.stringify(url)}, { method: ${JSON.stringify(method)} }, (res) => {` +
      "let body = ''; res.setEncoding('utf8'); res.on('data', (c) => (body += c));" +
      "res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body })));" +
      "}); req.end();",
    proxy,
  );

beforeAll(async () => {
  upstream = await startUpstream((req, res) =>
    json(res, 200, { url: req.url, email: EMAIL, auth: req.headers.authorization ?? null }),
  );
  sc = await startSidecar({
    policies: [policy("env-proxy", spec(upstream.port))],
    secrets: { "customers-token": { token: "sidecar-held-token" } },
  });
  proxyUrl = await sc.listenProxy();
});

afterAll(async () => {
  await sc?.close();
  await upstream?.close();
});

it("premise: Node's fetch tunnels http:// through CONNECT, node:http sends absolute-form", async () => {
  // A bare TCP listener that records each request line and refuses it.
  const lines: string[] = [];
  const recorder: Server = createServer((c) =>
    c.once("data", (d: Buffer) => {
      lines.push(d.toString("latin1").split("\r\n")[0] ?? "");
      c.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
    }),
  );
  await new Promise<void>((r) => recorder.listen(0, "127.0.0.1", () => r()));
  const addr = recorder.address();
  const at = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  try {
    await viaHttp("http://customers.internal.test:8080/x", "GET", at);
    await viaFetch("http://customers.internal.test:8080/x", "GET", at).catch(() => undefined);
  } finally {
    recorder.close();
  }
  expect(lines).toEqual([
    "GET http://customers.internal.test:8080/x HTTP/1.1",
    "CONNECT customers.internal.test:8080 HTTP/1.1",
  ]);
});

describe.each([
  ["fetch (CONNECT even for http://)", viaFetch],
  ["node:http (absolute-form)", viaHttp],
])("NODE_USE_ENV_PROXY, %s", (_label, call) => {
  it("an allowed path gets the sidecar's credential and a masked body, audited as an HTTP request", async () => {
    const before = sc.audit.length;
    const r = await call(`http://customers.internal.test:${upstream.port}/customers/7`);
    expect(r.status).toBe(200);
    const body = JSON.parse(r.body) as { url: string; email: string; auth: string };
    expect(body.auth).toBe("Bearer sidecar-held-token");
    expect(body.url).toBe("/customers/7");
    expect(r.body).not.toContain(EMAIL);
    const events = sc.audit.slice(before);
    expect(events).toMatchObject([
      {
        connection: "customers",
        operation: { kind: "http", method: "GET", path: "/customers/7" },
        decision: { action: "allow", rule: "read-customers" },
      },
    ]);
  });

  it("path rules hold: a deny rule and the default deny refuse before the upstream", async () => {
    const seen = upstream.requests.length;
    const denied = await call(`http://customers.internal.test:${upstream.port}/admin/users`);
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toMatchObject({ error: "denied", rule: "no-admin" });
    const write = await call(`http://customers.internal.test:${upstream.port}/customers/7`, "DELETE");
    expect(write.status).toBe(403);
    expect(JSON.parse(write.body)).toMatchObject({ error: "denied" });
    expect(upstream.requests.length).toBe(seen);
  });
});
