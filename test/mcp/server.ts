// A real MCP server for the guard's tests: the official TypeScript SDK's McpServer over the
// Streamable HTTP transport (stateless: each POST gets a fresh server and transport), with a few
// tools, resources and prompts, recording every tool call and its arguments.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

export interface McpUpstream {
  port: number;
  /** Names of the tools called, in order. */
  calls: string[];
  /** Arguments of each call, in order. */
  args: Record<string, unknown>[];
  close(): Promise<void>;
}

export const TOOLS = ["get_weather", "delete_database", "send_email", "run_report", "slow_report"];
export const RESOURCES = ["file:///docs/readme.md", "file:///secrets/key.pem"];
export const PROMPTS = ["summarize", "internal_only"];

export async function startMcpServer(): Promise<McpUpstream> {
  const calls: string[] = [];
  const args: Record<string, unknown>[] = [];
  const build = () => {
    const server = new McpServer({ name: "ops", version: "1.0.0" });
    for (const name of TOOLS)
      server.registerTool(
        name,
        {
          description: `${name} tool`,
          inputSchema: { arg: z.string().optional(), account: z.string().optional() },
        },
        async (a) => {
          calls.push(name);
          args.push(a);
          return { content: [{ type: "text", text: `${name} done` }] };
        },
      );
    for (const uri of RESOURCES)
      server.registerResource(uri, uri, { description: `${uri} resource` }, async () => ({
        contents: [{ uri, text: `contents of ${uri}` }],
      }));
    for (const name of PROMPTS)
      server.registerPrompt(name, { description: `${name} prompt` }, () => ({
        messages: [{ role: "user", content: { type: "text", text: `${name} text` } }],
      }));
    return server;
  };
  const http: Server = createServer(async (req, res) => {
    const server = build();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on("close", () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  return {
    port: (http.address() as AddressInfo).port,
    calls,
    args,
    close: () =>
      new Promise((r) => {
        http.closeAllConnections();
        http.close(() => r());
      }),
  };
}
