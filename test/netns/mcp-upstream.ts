// The MCP server of the Claude agent test, run in the upstream network namespace (startService):
// test/mcp/server.ts's SDK server listening on the given address. Prints {"ready":port}, then a
// line with the tool calls and their arguments each time they change.
import { startMcpServer } from "../mcp/server.ts";

const arg = JSON.parse(process.argv[2] ?? "{}") as { host: string; port: number };
const upstream = await startMcpServer({ host: arg.host, port: arg.port });
process.stdout.write(`${JSON.stringify({ ready: upstream.port })}\n`);
let seen = 0;
setInterval(() => {
  if (upstream.calls.length === seen) return;
  seen = upstream.calls.length;
  process.stdout.write(`${JSON.stringify({ mcpCalls: upstream.calls, mcpArgs: upstream.args })}\n`);
}, 50);
