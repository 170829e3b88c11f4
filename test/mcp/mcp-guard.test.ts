// The MCP guard with real MCP peers: the official TypeScript SDK's McpServer (Streamable HTTP) behind
// the sidecar's connection listener, and the SDK's Client through it.
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeKey, signToken, TestIdp, type TestKey } from "../fixtures/oidc-provider.ts";
import type { Sidecar } from "../http/harness.ts";
import type { McpUpstream } from "./server.ts";
import { type McpThroughSidecar, mcpConnection, mcpThroughSidecar } from "./through-sidecar.ts";

describe("MCP guard (SDK server and client through the sidecar)", () => {
  let mcp: McpThroughSidecar;
  let upstream: McpUpstream;
  let sidecar: Sidecar;
  let base: string;
  let client: Client;

  beforeAll(async () => {
    mcp = await mcpThroughSidecar({
      policy: "mcp",
      listen: "ops-mcp",
      spec: (upstream) => ({
        connections: [mcpConnection("ops-mcp", upstream, { limits: { maxRequestBodyBytes: 4096 } })],
        rules: [
          {
            name: "no-destruction",
            action: "deny",
            connections: ["ops-mcp"],
            match: { mcp: { tools: ["delete_*"] } },
          },
          {
            name: "session",
            action: "allow",
            connections: ["ops-mcp"],
            match: {
              mcp: { methods: ["initialize", "ping", "tools/list", "resources/list", "prompts/list"] },
            },
          },
          {
            name: "docs",
            action: "allow",
            connections: ["ops-mcp"],
            match: { mcp: { resources: ["file:///docs/**"], prompts: ["summarize"] } },
          },
          {
            name: "reports",
            action: "requireApproval",
            connections: ["ops-mcp"],
            match: { mcp: { tools: ["run_report"] } },
            approval: { approvers: { groups: ["sre"] } },
          },
          {
            name: "weather",
            action: "allow",
            connections: ["ops-mcp"],
            match: { mcp: { tools: ["get_weather"] } },
          },
        ],
      }),
    });
    ({ upstream, sidecar, base } = mcp);
    ({ client } = await mcp.connect());
  });

  afterAll(() => mcp?.close());

  it("tools/list shows only the tools the agent may call; approval ones say so", async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => [t.name, t.description])).toEqual([
      ["get_weather", "get_weather tool"],
      ["run_report", "run_report tool (requires approval)"],
    ]);
  });

  it("resources/list and prompts/list show only what the agent may read or get", async () => {
    const { resources } = await client.listResources();
    expect(resources.map((r) => r.uri)).toEqual(["file:///docs/readme.md"]);
    const { prompts } = await client.listPrompts();
    expect(prompts.map((p) => p.name)).toEqual(["summarize"]);
  });

  it("resources/read and prompts/get are judged by match.mcp resources and prompts", async () => {
    const doc = await client.readResource({ uri: "file:///docs/readme.md" });
    expect(doc.contents).toEqual([
      { uri: "file:///docs/readme.md", text: "contents of file:///docs/readme.md" },
    ]);
    const key = await client.readResource({ uri: "file:///secrets/key.pem" }).catch((e: unknown) => e);
    expect((key as McpError).code).toBe(-32010);
    expect((key as McpError).message).toMatch(
      /resources\/read file:\/\/\/secrets\/key.pem: no rule allows it/,
    );
    const prompt = await client.getPrompt({ name: "summarize" });
    expect(prompt.messages[0]?.content).toEqual({ type: "text", text: "summarize text" });
    const hidden = await client.getPrompt({ name: "internal_only" }).catch((e: unknown) => e);
    expect((hidden as McpError).code).toBe(-32010);
    expect((hidden as McpError).message).toMatch(/prompts\/get internal_only: no rule allows it/);
    const ev = sidecar.audit.find(
      (e) => e.operation.kind === "mcp" && e.operation.method === "resources/read",
    );
    expect(ev?.decision).toMatchObject({ action: "allow", rule: "docs" });
  });

  it("a requireApproval tool without an approval service is refused, naming rule and outcome", async () => {
    const err = await client.callTool({ name: "run_report", arguments: {} }).catch((e: unknown) => e);
    expect((err as McpError).code).toBe(-32010);
    expect((err as McpError).message).toMatch(
      /did not forward tools\/call run_report: rule reports: approval required but no approval service is configured/,
    );
    expect((err as McpError).data).toMatchObject({
      airlock: { decision: "requireApproval", rule: "reports", error: "approval_unavailable" },
    });
    expect(upstream.calls).not.toContain("run_report");
  });

  it("an allowed tool call works and is audited with its tool and rule", async () => {
    const r = await client.callTool({ name: "get_weather", arguments: { arg: "Oslo" } });
    expect(r.content).toEqual([{ type: "text", text: "get_weather done" }]);
    expect(upstream.calls).toContain("get_weather");
    const ev = sidecar.audit.find((e) => e.operation.kind === "mcp" && e.decision.rule === "weather");
    expect(ev?.operation).toEqual({ kind: "mcp", method: "tools/call", tool: "get_weather" });
    expect(ev?.decision).toMatchObject({ action: "allow", rule: "weather" });
  });

  it("a denied tool call gets a JSON-RPC error naming the rule and never reaches the server", async () => {
    const err = await client.callTool({ name: "delete_database", arguments: {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(-32010);
    expect((err as McpError).message).toMatch(
      /tools\/call delete_database: rule no-destruction of policy agents\/mcp/,
    );
    expect((err as McpError).data).toMatchObject({
      airlock: { decision: "deny", rule: "no-destruction", tool: "delete_database" },
    });
    expect(upstream.calls).not.toContain("delete_database");
    const ev = sidecar.audit.find((e) => e.operation.kind === "mcp" && e.decision.rule === "no-destruction");
    expect(ev?.operation).toEqual({ kind: "mcp", method: "tools/call", tool: "delete_database" });
  });

  it("a tool no rule names is refused by default deny", async () => {
    const err = await client.callTool({ name: "send_email", arguments: {} }).catch((e: unknown) => e);
    expect((err as McpError).code).toBe(-32010);
    expect((err as McpError).message).toMatch(/send_email: no rule allows it \(default deny\)/);
    expect(upstream.calls).not.toContain("send_email");
  });

  it("counts requests by method and decision, with tool names only as the policy spells them", async () => {
    const text = await sidecar.metrics.registry.getSingleMetricAsString("airlock_mcp_requests_total");
    const count = (labels: string) =>
      Number(new RegExp(`^airlock_mcp_requests_total\\{${labels}\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
    expect(
      count('connection="ops-mcp",method="tools/call",tool="get_weather",decision="allow"'),
    ).toBeGreaterThan(0);
    // delete_database is named by a glob only, send_email not at all: both are `other`.
    expect(
      count('connection="ops-mcp",method="tools/call",tool="other",decision="deny"'),
    ).toBeGreaterThanOrEqual(2);
    expect(count('connection="ops-mcp",method="tools/list",tool="",decision="allow"')).toBeGreaterThan(0);
    expect(text).not.toMatch(/tool="(delete_database|send_email)"/);
  });

  const post = (body: string, type = "application/json") =>
    fetch(`${base}/mcp`, {
      method: "POST",
      headers: { "content-type": type, accept: "application/json, text/event-stream" },
      body,
    });

  it("a batch with one refused request is refused whole", async () => {
    const res = await post(
      JSON.stringify([
        { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "get_weather", arguments: {} } },
        { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "delete_database", arguments: {} } },
      ]),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { id: number; error: { code: number; message: string } }[];
    expect(body.map((m) => [m.id, m.error.code])).toEqual([
      [1, -32010],
      [2, -32010],
    ]);
    expect(body[0]?.error.message).toMatch(/whole batch/);
    expect(body[1]?.error.message).toMatch(/rule no-destruction/);
  });

  it.each([
    ["malformed JSON", "{not json", "application/json", 400, -32700, /not valid JSON/],
    [
      "not JSON-RPC",
      JSON.stringify({ hello: 1 }),
      "application/json",
      400,
      -32600,
      /not a JSON-RPC 2.0 message/,
    ],
    ["a non-JSON content type", "x=1", "application/x-www-form-urlencoded", 415, -32600, /application\/json/],
    [
      "an oversized body",
      JSON.stringify({
        jsonrpc: "2.0",
        id: 9,
        method: "tools/call",
        params: { name: "get_weather", arguments: { arg: "x".repeat(5000) } },
      }),
      "application/json",
      413,
      -32600,
      /limited to 4096 bytes/,
    ],
  ])("%s is refused with a clear JSON-RPC error", async (_what, body, type, status, code, message) => {
    const before = upstream.requests;
    const res = await post(body, type);
    expect(res.status).toBe(status);
    const out = (await res.json()) as { id: null; error: { code: number; message: string } };
    expect(out.id).toBeNull();
    expect(out.error.code).toBe(code);
    expect(out.error.message).toMatch(message);
    // Nothing reached the server: not even an HTTP request it would refuse itself.
    expect(upstream.requests).toBe(before);
  });
});

describe("Mcp-Session-Id binding (stateful SDK server, two end users)", () => {
  let mcp: McpThroughSidecar;
  let upstream: McpUpstream;
  let sidecar: Sidecar;
  let base: string;
  let idp: TestIdp;
  let key: TestKey;
  let alice: Client;
  let transport: StreamableHTTPClientTransport;
  const token = (sub: string) =>
    signToken(key, {
      iss: idp.url,
      aud: "airlock",
      sub,
      groups: ["agents"],
      iat: Math.floor(Date.now() / 1000),
      exp: Math.floor(Date.now() / 1000) + 600,
    });

  beforeAll(async () => {
    key = await makeKey("RS256", "k1");
    idp = await TestIdp.start([key]);
    mcp = await mcpThroughSidecar({
      server: { stateful: true },
      policy: "mcp-sessions",
      listen: "ops-mcp",
      spec: (upstream) => ({
        identity: { oidc: { issuer: idp.url, audiences: ["airlock"], jwksUri: idp.jwksUri } },
        connections: [mcpConnection("ops-mcp", upstream)],
        rules: [
          {
            name: "session",
            action: "allow",
            connections: ["ops-mcp"],
            match: { mcp: { methods: ["initialize", "ping", "tools/list"] } },
          },
        ],
      }),
    });
    ({ upstream, sidecar, base } = mcp);
    ({ client: alice, transport } = await mcp.connect({
      transport: { requestInit: { headers: { "x-airlock-identity": `Bearer ${await token("alice")}` } } },
    }));
  });

  afterAll(async () => {
    await mcp?.close();
    await idp?.stop();
  });

  it("the session the server issued to one user cannot be used by another; audit carries a digest", async () => {
    const sid = transport.sessionId;
    expect(sid).toMatch(/^[0-9a-f-]{36}$/);
    expect((await alice.listTools()).tools).toEqual([]);
    const seen = upstream.sessions.length;
    const res = await fetch(`${base}/mcp`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-session-id": sid ?? "",
        "mcp-protocol-version": "2025-06-18",
        "x-airlock-identity": `Bearer ${await token("bob")}`,
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 5, method: "tools/list" }),
    });
    expect(res.status).toBe(403);
    const body = (await res.json()) as { error: { code: number; message: string } };
    expect(body.error.code).toBe(-32010);
    expect(body.error.message).toMatch(/this Mcp-Session-Id belongs to another subject/);
    expect(upstream.sessions.length).toBe(seen);
    // alice keeps her session.
    expect((await alice.listTools()).tools).toEqual([]);

    const events = sidecar.audit.filter((e) => e.operation.kind === "mcp");
    const digests = new Set(
      events.map((e) => (e.operation.kind === "mcp" ? e.operation.session : undefined)),
    );
    const init = events.find((e) => e.operation.kind === "mcp" && e.operation.method === "initialize");
    const refused = events.find((e) => e.identity.user === "bob");
    expect(refused?.decision.action).toBe("deny");
    const digest = refused?.operation.kind === "mcp" ? refused.operation.session : undefined;
    expect(digest).toMatch(/^[0-9a-f]{16}$/);
    expect(init?.operation).toMatchObject({ session: digest });
    expect(digests).toEqual(new Set([digest]));
    expect(JSON.stringify(sidecar.audit)).not.toContain(sid);
    expect(sidecar.logs()).not.toContain(sid);
  });
});
