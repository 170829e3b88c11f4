// The MCP server's credential held by the sidecar, with real peers: the SDK's stateful McpServer
// refuses (401) every HTTP request without its bearer token; the agent (the SDK's Client) has no
// token. Everything the sidecar sends the server carries it — the agent's POSTs, its GET stream,
// its session end, and the sidecar's own answer to a server request it refuses — and nothing the
// agent, the audit or the logs see contains it.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { policy, type Sidecar, startSidecar } from "../http/harness.ts";
import { type McpUpstream, startMcpServer } from "./server.ts";

const TOKEN = "mcp-server-token-5d1f0a";

describe("the MCP server's credential, held by the sidecar", () => {
  let upstream: McpUpstream;
  let sidecar: Sidecar;
  let base: string;
  let client: Client;
  let transport: StreamableHTTPClientTransport;
  const seenByAgent: string[] = [];

  beforeAll(async () => {
    upstream = await startMcpServer({ stateful: true, bearer: TOKEN });
    sidecar = await startSidecar({
      policies: [
        policy("mcp-credentials", {
          connections: [
            {
              name: "ops",
              protocol: "mcp",
              target: { host: "127.0.0.1", port: upstream.port },
              tls: { mode: "disable" },
              credentials: { secretRef: { name: "mcp-token" } },
            },
          ],
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
      ],
      secrets: { "mcp-token": { token: TOKEN } },
    });
    base = await sidecar.listen("ops");
    client = new Client({ name: "agent", version: "1.0.0" }, { capabilities: { sampling: {} } });
    client.setRequestHandler(CreateMessageRequestSchema, async () => {
      seenByAgent.push("sampling");
      return { model: "m", role: "assistant", content: { type: "text", text: "hi" } };
    });
    // The agent sends a guess of its own: the sidecar's credential replaces it.
    transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
      requestInit: { headers: { authorization: "Bearer agent-guess" } },
    });
    await client.connect(transport);
  });

  afterAll(async () => {
    await sidecar?.close();
    await upstream?.close();
  });

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
