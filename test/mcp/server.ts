// A real MCP server for the guard's tests: the official TypeScript SDK's McpServer over the
// Streamable HTTP transport, with a few tools, resources and prompts, recording every tool call and
// its arguments. Stateless (each POST gets a fresh server and transport), or stateful: the server
// issues an Mcp-Session-Id at initialize and later requests name it. Tools that ask the client
// something (sampling, elicitation, roots) do it in the call's own stream or, through the
// session's server with no related request, on the GET stream (stateful servers only); their
// result is the client's answer or the error the server got. A tool's description can be changed
// while the server runs (a "rug pull"). lookup_customer answers with PII in its text, its
// structuredContent and a log notification sent ahead of the result. Stateless servers answer in an
// SSE stream, or with one JSON body (`json`).

import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { RegisteredTool } from "@modelcontextprotocol/sdk/server/mcp.js";
import { McpServer, ResourceTemplate } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { RequestHandlerExtra } from "@modelcontextprotocol/sdk/shared/protocol.js";
import {
  CreateMessageResultSchema,
  ElicitResultSchema,
  ListRootsResultSchema,
  type ServerNotification,
  type ServerRequest,
} from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

export interface McpUpstream {
  port: number;
  /** Names of the tools called, in order. */
  calls: string[];
  /** Arguments of each call, in order. */
  args: Record<string, unknown>[];
  /** Mcp-Session-Id of each POST the server received (stateful servers), in order. */
  sessions: (string | undefined)[];
  /** HTTP requests the server received (every method). */
  requests: number;
  /** The Authorization header of every HTTP request, in order ("" when absent). */
  authorizations: string[];
  /** Changes a tool's description (every session's server, and those built later). */
  describeTool(name: string, description: string): void;
  close(): Promise<void>;
}

export const TOOLS = ["get_weather", "delete_database", "send_email", "run_report", "slow_report"];
export const RESOURCES = ["file:///docs/readme.md", "file:///secrets/key.pem"];
export const TEMPLATES = ["file:///docs/{name}", "file:///secrets/{name}"];
export const PROMPTS = ["summarize", "internal_only"];

/** What lookup_customer answers: PII in the text, in structuredContent and in a log message. */
export const CUSTOMER = { email: "ann@example.com", card: "4111 1111 1111 1111", plan: "gold" };

export async function startMcpServer(
  opts: {
    stateful?: boolean;
    /** Answer POSTs with one JSON body instead of an SSE stream (stateless servers). */
    json?: boolean;
    /** Refuse (401) every HTTP request without `Authorization: Bearer <this>`. */
    bearer?: string;
    /** Where to listen (default 127.0.0.1, a free port). */
    host?: string;
    port?: number;
  } = {},
): Promise<McpUpstream> {
  const calls: string[] = [];
  const sessions: (string | undefined)[] = [];
  const open = new Map<string, StreamableHTTPServerTransport>();
  const args: Record<string, unknown>[] = [];
  const descriptions = new Map(TOOLS.map((t) => [t, `${t} tool`]));
  const registered: Map<string, RegisteredTool>[] = [];
  const outcome = async (ask: () => Promise<unknown>) => {
    try {
      return { content: [{ type: "text" as const, text: `answer: ${JSON.stringify(await ask())}` }] };
    } catch (err) {
      return {
        content: [{ type: "text" as const, text: `error: ${err instanceof Error ? err.message : err}` }],
      };
    }
  };
  const build = () => {
    const server = new McpServer({ name: "ops", version: "1.0.0" }, { capabilities: { logging: {} } });
    const tools = new Map<string, RegisteredTool>();
    registered.push(tools);
    const sampling = {
      messages: [{ role: "user" as const, content: { type: "text" as const, text: "hi" } }],
      maxTokens: 5,
    };
    const elicitation = {
      mode: "form" as const,
      message: "Your password?",
      requestedSchema: { type: "object" as const, properties: { password: { type: "string" as const } } },
    };
    const asking = {
      // In the call's own stream.
      ask_model: (extra: Extra) =>
        extra.sendRequest({ method: "sampling/createMessage", params: sampling }, CreateMessageResultSchema),
      ask_user: (extra: Extra) =>
        extra.sendRequest({ method: "elicitation/create", params: elicitation }, ElicitResultSchema),
      list_roots: (extra: Extra) => extra.sendRequest({ method: "roots/list" }, ListRootsResultSchema),
      // On the GET stream: the session's server asks with no related request.
      ask_model_later: () => server.server.createMessage(sampling),
      list_roots_later: () => server.server.listRoots(),
    };
    for (const [name, ask] of Object.entries(asking))
      server.registerTool(name, { description: `${name} tool` }, async (extra) => {
        calls.push(name);
        return outcome(() => ask(extra));
      });
    for (const name of TOOLS) {
      const tool = server.registerTool(
        name,
        {
          description: descriptions.get(name) ?? "",
          inputSchema: { arg: z.string().optional(), account: z.string().optional() },
        },
        async (a) => {
          calls.push(name);
          args.push(a);
          return { content: [{ type: "text", text: `${name} done` }] };
        },
      );
      tools.set(name, tool);
    }
    server.registerTool(
      "lookup_customer",
      {
        description: "lookup_customer tool",
        outputSchema: { email: z.string(), card: z.string(), plan: z.string() },
      },
      async (extra) => {
        calls.push("lookup_customer");
        // A log notification first: on an SSE answer it is its own event, ahead of the result.
        await extra.sendNotification({
          method: "notifications/message",
          params: { level: "info", data: `looking up ${CUSTOMER.email}` },
        });
        return {
          content: [{ type: "text", text: `customer ${CUSTOMER.email} card ${CUSTOMER.card}` }],
          structuredContent: { ...CUSTOMER },
        };
      },
    );
    // ~150 KB in one event: the sidecar receives it in many TCP chunks.
    server.registerTool("export_customers", { description: "export_customers tool" }, async () => {
      calls.push("export_customers");
      const rows = Array.from({ length: 2000 }, (_, i) => `row ${i}: c${i}@example.com ${CUSTOMER.card}`);
      return { content: [{ type: "text", text: rows.join("\n") }] };
    });
    for (const uri of RESOURCES)
      server.registerResource(uri, uri, { description: `${uri} resource` }, async () => ({
        contents: [{ uri, text: `contents of ${uri}` }],
      }));
    for (const uriTemplate of TEMPLATES)
      server.registerResource(
        uriTemplate,
        new ResourceTemplate(uriTemplate, { list: undefined }),
        { description: `${uriTemplate} template` },
        async (uri) => ({ contents: [{ uri: uri.href, text: `contents of ${uri.href}` }] }),
      );
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
  const upstream: McpUpstream = {
    port: 0,
    calls,
    args,
    sessions,
    requests: 0,
    authorizations: [],
    describeTool(name, description) {
      descriptions.set(name, description);
      for (const tools of registered) tools.get(name)?.update({ description });
    },
    close: () =>
      new Promise((r) => {
        http.closeAllConnections();
        http.close(() => r());
      }),
  };
  const http: Server = createServer(async (req, res) => {
    upstream.requests++;
    const authorization = req.headers.authorization ?? "";
    upstream.authorizations.push(authorization);
    if (opts.bearer !== undefined && authorization !== `Bearer ${opts.bearer}`) {
      res.writeHead(401, { "content-type": "application/json", "www-authenticate": "Bearer" });
      res.end(JSON.stringify({ error: "invalid_token" }));
      return;
    }
    if (opts.stateful) return stateful(req, res);
    const server = build();
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: opts.json ?? false,
    });
    res.on("close", () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((r) => http.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", r));
  upstream.port = (http.address() as AddressInfo).port;
  return upstream;
}
