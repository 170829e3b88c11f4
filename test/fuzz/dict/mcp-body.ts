// Dictionary of the mcp-body target: JSON-RPC and MCP keys, methods and CEL tokens, so mutations
// build messages the SDK server would run (and conditions that compile) rather than JSON noise.
const keys = [
  "jsonrpc",
  "id",
  "method",
  "params",
  "name",
  "arguments",
  "uri",
  "result",
  "error",
  "requestId",
  "_meta",
];
const methods = [
  "tools/call",
  "tools/list",
  "resources/read",
  "prompts/get",
  "initialize",
  "ping",
  "notifications/cancelled",
  "notifications/initialized",
  "sampling/createMessage",
];

export const words = [
  ...keys.map((k) => `"${k}":`),
  ...methods.map((m) => `"${m}"`),
  '"2.0"',
  '"get_weather"',
  '"run_report"',
  '"search_x"',
  '"env":"prod"',
  '"limit":500',
  '"table":"users"',
  "[{",
  "},{",
  "null",
  "has(args.",
  "args.",
  ".exists(",
  ".matches(",
  " in [",
  " && ",
  " || ",
];
