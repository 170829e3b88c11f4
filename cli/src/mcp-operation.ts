// `airlock policy test --mcp "METHOD ..."`: the text turned into the JSON-RPC request it stands
// for, then read by the MCP guard's own parser, so that the operation judged offline is the one
// the sidecar would judge on the wire.

import type { Operation } from "../../sidecar/src/policy/types.ts";
import { parseMcpBody } from "../../sidecar/src/protocols/mcp/jsonrpc.ts";
import { UsageError } from "./command.ts";

type McpOperation = Extract<Operation, { kind: "mcp" }>;

/** Methods only a server sends (to the agent); judged as operations of origin server. */
const SERVER_METHODS = new Set(["sampling/createMessage", "elicitation/create", "roots/list"]);

const USAGE =
  '--mcp takes "METHOD [NAME|URI] [ARGS_JSON]", e.g. --mcp \'tools/call get_weather {"city":"Oslo"}\', --mcp "resources/read file:///docs/a.md", --mcp tools/list';

/** The operation, and for tools/call the arguments that match.mcp.when sees. */
export function mcpOperation(text: string): { op: McpOperation; arguments?: unknown } {
  const m = /^\s*(\S+)(?:\s+(\S+))?(?:\s+([\s\S]*\S))?\s*$/.exec(text);
  if (!m) throw new UsageError(USAGE);
  const [, method = "", target, rest] = m;
  if (SERVER_METHODS.has(method)) {
    if (target !== undefined) throw new UsageError(`--mcp ${method} takes no arguments (${USAGE})`);
    return { op: { kind: "mcp", method, origin: "server" } };
  }
  let params: Record<string, unknown> | undefined;
  if (method === "tools/call") {
    if (target === undefined) throw new UsageError(`--mcp tools/call needs a tool name (${USAGE})`);
    let args: unknown = {};
    if (rest !== undefined) {
      try {
        args = JSON.parse(rest);
      } catch {
        throw new UsageError(`--mcp tools/call ${target}: the arguments are not JSON: ${rest}`);
      }
      if (typeof args !== "object" || args === null || Array.isArray(args))
        throw new UsageError(`--mcp tools/call ${target}: the arguments must be a JSON object`);
    }
    params = { name: target, arguments: args };
  } else if (method === "resources/read" || method === "prompts/get") {
    if (target === undefined || rest !== undefined)
      throw new UsageError(
        `--mcp ${method} takes one ${method === "prompts/get" ? "name" : "URI"} (${USAGE})`,
      );
    params = method === "prompts/get" ? { name: target } : { uri: target };
  } else if (target !== undefined) throw new UsageError(`--mcp ${method} takes no arguments here (${USAGE})`);
  const body = { jsonrpc: "2.0", id: 1, method, ...(params ? { params } : {}) };
  const parsed = parseMcpBody(Buffer.from(JSON.stringify(body)));
  const request = parsed.ok ? parsed.requests[0] : undefined;
  if (!request) throw new UsageError(`--mcp: ${parsed.ok ? "not a request" : parsed.message}`);
  return method === "tools/call"
    ? { op: request.operation, arguments: request.arguments }
    : { op: request.operation };
}
