// The MCP server's credential held by the sidecar, with real peers: the SDK's stateful McpServer
// refuses (401) every HTTP request without its bearer token; the agent (the SDK's Client) has no
// token. Everything the sidecar sends the server carries it — the agent's POSTs, its GET stream,
// its session end, and the sidecar's own answer to a server request it refuses — and nothing the
// agent, the audit or the logs see contains it.
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sidecar } from "../http/harness.ts";
import type { McpUpstream } from "./server.ts";
import { type McpThroughSidecar, mcpConnection, mcpThroughSidecar } from "./through-sidecar.ts";

const TOKEN = "mcp-server-token-5d1f0a";

describe("the MCP server's credential, held by the sidecar", () => {
  let mcp: McpThroughSidecar;
  let upstream: McpUpstream;
  let sidecar: Sidecar;
  let client: Client;
  let transport: StreamableHTTPClientTransport;
  const seenByAgent: string[] = [];

  beforeAll(async () => {
    mcp = await mcpThroughSidecar({
      server: { stateful: true, bearer: TOKEN },
      policy: "mcp-credentials",
      listen: "ops",
      spec: (upstream) => ({
        connections: [mcpConnection("ops", upstream, { credentials: { secretRef: { name: "mcp-token" } } })],
        rules: [
          {
            name: "session",
            action: "allow",
            connections: ["ops"],
            match: { mcp: { methods: ["initialize", "ping", "tools/list"] } },
          },
          {
            name: "tools",
            action: "allow",
            connections: ["ops"],
            match: { mcp: { tools: ["get_weather", "ask_model"] } },
          },
        ],
      }),
      secrets: { "mcp-token": { token: TOKEN } },
    });
    ({ upstream, sidecar } = mcp);
    ({ client, transport } = await mcp.connect({
      client: { capabilities: { sampling: {} } },
      setUp: (c) =>
        c.setRequestHandler(CreateMessageRequestSchema, async () => {
          seenByAgent.push("sampling");
          return { model: "m", role: "assistant", content: { type: "text", text: "hi" } };
        }),
      // The agent sends a guess of its own: the sidecar's credential replaces it.
      transport: { requestInit: { headers: { authorization: "Bearer agent-guess" } } },
    }));
  });

  afterAll(() => mcp?.close());

  it("the agent, holding no token, lists and calls tools; the server saw only the sidecar's token", async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(["ask_model", "get_weather"]);
    const r = await client.callTool({ name: "get_weather", arguments: { arg: "Oslo" } });
    expect(r.content).toEqual([{ type: "text", text: "get_weather done" }]);
    expect(upstream.authorizations.length).toBeGreaterThanOrEqual(3);
    expect(new Set(upstream.authorizations)).toEqual(new Set([`Bearer ${TOKEN}`]));
  });

  it("the sidecar's refusal of a server request reaches the server with the credential", async () => {
    const before = upstream.authorizations.length;
    const r = await client.callTool({ name: "ask_model", arguments: {} });
    // The server got Airlock's JSON-RPC error (its POST was accepted, not 401), the agent nothing.
    expect((r.content as { text: string }[])[0]?.text).toMatch(
      /^error: MCP error -32010: Airlock refused sampling\/createMessage from the server/,
    );
    expect(seenByAgent).toEqual([]);
    const sent = upstream.authorizations.slice(before);
    expect(sent.length).toBeGreaterThanOrEqual(2); // the call, the sidecar's answer
    expect(new Set(sent)).toEqual(new Set([`Bearer ${TOKEN}`]));
  });

  it("session end carries it too; the token is in no response, audit event or log line", async () => {
    const before = upstream.authorizations.length;
    await transport.terminateSession();
    expect(upstream.authorizations.length).toBe(before + 1);
    expect(upstream.authorizations.at(-1)).toBe(`Bearer ${TOKEN}`);
    await client.close();
    expect(JSON.stringify(sidecar.audit)).not.toContain(TOKEN);
    expect(sidecar.logs()).not.toContain(TOKEN);
  });
});
