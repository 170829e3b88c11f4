// The older HTTP+SSE transport (MCP 2024-11-05: GET /sse, then POSTs to the endpoint the server
// names, answers on the event stream) is not supported: with the SDK's SSEServerTransport behind
// the sidecar and its SSEClientTransport in front, the client never learns the endpoint (an event
// that is not JSON-RPC is not relayed), so nothing reaches the server unjudged. This pins the
// fail-closed behaviour until the transport is supported on purpose.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { policy, type Sidecar, startSidecar } from "../http/harness.ts";

describe("the older HTTP+SSE transport fails closed", () => {
  let http: Server;
  let sidecar: Sidecar;
  let base: string;
  const posts: string[] = [];
  const calls: string[] = [];

  beforeAll(async () => {
    const transports = new Map<string, SSEServerTransport>();
    http = createServer(async (req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (req.method === "GET" && url.pathname === "/sse") {
        const transport = new SSEServerTransport("/messages", res);
        transports.set(transport.sessionId, transport);
        const server = new McpServer({ name: "legacy", version: "1.0.0" });
        server.registerTool("get_weather", { description: "get_weather tool" }, async () => {
          calls.push("get_weather");
          return { content: [{ type: "text", text: "done" }] };
        });
        await server.connect(transport);
        return;
      }
      if (req.method === "POST" && url.pathname === "/messages") {
        posts.push(url.search);
        const t = transports.get(url.searchParams.get("sessionId") ?? "");
        if (t) return t.handlePostMessage(req, res);
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
    sidecar = await startSidecar({
      policies: [
        policy("mcp-legacy", {
          connections: [
            {
              name: "legacy",
              protocol: "mcp",
              target: { host: "127.0.0.1", port: (http.address() as AddressInfo).port },
              tls: { mode: "disable" },
            },
          ],
          rules: [
            {
              name: "all",
              action: "allow",
              connections: ["legacy"],
              match: { mcp: { methods: ["initialize", "ping", "tools/list"], tools: ["get_weather"] } },
            },
          ],
        }),
      ],
    });
    base = await sidecar.listen("legacy");
  });

  afterAll(async () => {
    await sidecar?.close();
    await new Promise<void>((r) => {
      http.closeAllConnections();
      http.close(() => r());
    });
  });

  it("the SDK's SSE client cannot connect through the sidecar; the server gets no message", async () => {
    const client = new Client({ name: "agent", version: "1.0.0" });
    const outcome = await Promise.race([
      client.connect(new SSEClientTransport(new URL(`${base}/sse`))).then(
        () => "connected",
        (e: unknown) => `failed: ${e instanceof Error ? e.message : String(e)}`,
      ),
      new Promise<string>((r) => setTimeout(() => r("no endpoint"), 3000)),
    ]);
    await client.close().catch(() => undefined);
    expect(outcome).not.toBe("connected");
    expect(posts).toEqual([]);
    expect(calls).toEqual([]);
    // The stream itself was judged as an MCP connection's event stream (audited once it ends).
    const streamEvent = () =>
      sidecar.audit.find((e) => e.operation.kind === "mcp" && e.operation.method === "(event stream)");
    for (let i = 0; i < 50 && !streamEvent(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(streamEvent()?.decision.action).toBe("allow");
  });
});
