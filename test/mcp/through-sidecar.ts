// The MCP suites' preamble: the SDK's McpServer (server.ts) behind the in-process sidecar of the
// HTTP harness, listening for one connection, and SDK Clients connected through that listener.
import { Client, type ClientOptions } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StreamableHTTPClientTransport,
  type StreamableHTTPClientTransportOptions,
} from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { AgentAccessPolicySpec, Connection } from "../../api/src/index.ts";
import { policy, type Sidecar, startSidecar } from "../http/harness.ts";
import { type McpUpstream, startMcpServer } from "./server.ts";

/** An `mcp` connection to `upstream` in plain text; `extra` adds limits, credentials, pins. */
export const mcpConnection = (
  name: string,
  upstream: McpUpstream,
  extra: Partial<Connection> = {},
): Connection => ({
  name,
  protocol: "mcp",
  target: { host: "127.0.0.1", port: upstream.port },
  tls: { mode: "disable" },
  ...extra,
});

export interface McpThroughSidecar {
  upstream: McpUpstream;
  sidecar: Sidecar;
  /** The connection's listener, e.g. http://127.0.0.1:N (the MCP endpoint is `${base}/mcp`). */
  base: string;
  /** An SDK Client connected to `${base}/mcp`; `setUp` registers its handlers before it connects. */
  connect(opts?: {
    client?: ClientOptions;
    transport?: StreamableHTTPClientTransportOptions;
    setUp?: (client: Client) => void;
  }): Promise<{ client: Client; transport: StreamableHTTPClientTransport }>;
  /** Closes the clients, the sidecar and the MCP server. */
  close(): Promise<void>;
}

export async function mcpThroughSidecar(opts: {
  /** The MCP server: one the caller started, or options to start one. */
  upstream?: McpUpstream;
  server?: Parameters<typeof startMcpServer>[0];
  /** The policy (name, spec over the server) and the connection the sidecar listens for. */
  policy: string;
  spec: (upstream: McpUpstream) => AgentAccessPolicySpec;
  listen: string;
  secrets?: Record<string, Record<string, string>>;
}): Promise<McpThroughSidecar> {
  const upstream = opts.upstream ?? (await startMcpServer(opts.server));
  const sidecar = await startSidecar({
    policies: [policy(opts.policy, opts.spec(upstream))],
    ...(opts.secrets ? { secrets: opts.secrets } : {}),
  });
  const base = await sidecar.listen(opts.listen);
  const clients: Client[] = [];
  return {
    upstream,
    sidecar,
    base,
    async connect(o = {}) {
      const client = new Client({ name: "agent", version: "1.0.0" }, o.client);
      o.setUp?.(client);
      const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), o.transport);
      clients.push(client);
      await client.connect(transport);
      return { client, transport };
    },
    async close() {
      for (const c of clients) await c.close();
      await sidecar.close();
      await upstream.close();
    },
  };
}
