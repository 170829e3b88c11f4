// Labels of airlock_mcp_requests_total, bounded whatever the agent sends: methods from the MCP
// specification, tool names only as the connection's rules spell them out (a glob such as `get_*`
// names no tool), everything else `other`.
import { type CompiledConnection, namedMcpTools } from "../../policy/compile.ts";
import type { McpOperation } from "./jsonrpc.ts";

const METHODS = new Set([
  "initialize",
  "ping",
  "tools/list",
  "tools/call",
  "resources/list",
  "resources/templates/list",
  "resources/read",
  "resources/subscribe",
  "resources/unsubscribe",
  "prompts/list",
  "prompts/get",
  "completion/complete",
  "logging/setLevel",
]);

export const OTHER = "other";

export function mcpLabels(
  connection: CompiledConnection,
  op: McpOperation,
): { method: string; tool: string } {
  const method = METHODS.has(op.method) ? op.method : OTHER;
  if (op.method !== "tools/call") return { method, tool: "" };
  const tool = op.tool !== undefined && namedMcpTools(connection).has(op.tool) ? op.tool : OTHER;
  return { method, tool };
}

/** Methods a server may ask of the client (the MCP specification's). */
const SERVER_METHODS = new Set(["sampling/createMessage", "elicitation/create", "roots/list", "ping"]);

export const serverMethodLabel = (method: string): string => (SERVER_METHODS.has(method) ? method : OTHER);

/** The tool label for a name: itself when the connection's policy spells it out, else other. */
export const toolLabel = (connection: CompiledConnection, tool: string): string =>
  namedMcpTools(connection).has(tool) ? tool : OTHER;
