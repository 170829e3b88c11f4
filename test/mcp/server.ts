// A real MCP server for the guard's tests: the official TypeScript SDK's McpServer over the
// Streamable HTTP transport, with a few tools, resources and prompts, recording every tool call and
// its arguments. Stateless (each POST gets a fresh server and transport), or stateful: the server
// issues an Mcp-Session-Id at initialize and later requests name it.
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
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
  /** Mcp-Session-Id of each POST the server received (stateful servers), in order. */
  sessions: (string | undefined)[];
  close(): Promise<void>;
}

export const TOOLS = ["get_weather", "delete_database", "send_email", "run_report", "slow_report"];
export const RESOURCES = ["file:///docs/readme.md", "file:///secrets/key.pem"];
export const PROMPTS = ["summarize", "internal_only"];

export async function startMcpServer(opts: { stateful?: boolean } = {}): Promise<McpUpstream> {
  const calls: string[] = [];
  const sessions: (string | undefined)[] = [];
  const open = new Map<string, StreamableHTTPServerTransport>();
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
  const stateful = async (req: IncomingMessage, res: ServerResponse) => {
    const id = req.headers["mcp-session-id"];
    sessions.push(typeof id === "string" ? id : undefined);
    const known = typeof id === "string" ? open.get(id) : undefined;
    if (known) return known.handleRequest(req, res);
    if (id !== undefined) {
      res.writeHead(404).end();
      return;
    }
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      onsessioninitialized: (sid) => {
        open.set(sid, transport);
      },
    });
    await build().connect(transport);
    await transport.handleRequest(req, res);
  };
  const http: Server = createServer(async (req, res) => {
    if (opts.stateful) return stateful(req, res);
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
    sessions,
    close: () =>
      new Promise((r) => {
        http.closeAllConnections();
        http.close(() => r());
      }),
  };
}
