// An unmodified Claude agent: the Claude Agent SDK (which runs its bundled Claude Code binary) with
// in-process tools that reach a support team's systems the ordinary way — a PostgreSQL driver to
// db.internal.test and fetch to https://api.example.test — and an HTTP MCP server at
// http://mcp.internal.test:8088/mcp. Nothing here knows about Airlock: the key
// is whatever ANTHROPIC_API_KEY holds (the injector's placeholder), TLS trust comes from the
// environment, the model is at https://api.anthropic.com. Prints one JSON line per SDK message
// type seen and a final {"result":...}.
import { createSdkMcpServer, query, tool } from "@anthropic-ai/claude-agent-sdk";
import pg from "pg";
import { z } from "zod";

const print = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
const API = "https://api.example.test";

const text = (t: string, isError = false) => ({ content: [{ type: "text" as const, text: t }], isError });

async function http(method: string, path: string, body?: unknown) {
  try {
    const res = await fetch(`${API}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return text(`HTTP ${res.status}\n${await res.text()}`, !res.ok);
  } catch (err) {
    return text(`request failed: ${(err as Error).message}`, true);
  }
}

const crm = createSdkMcpServer({
  name: "crm",
  version: "1.0.0",
  tools: [
    tool("get_customer", "Fetch a customer record from the CRM API", { id: z.number() }, ({ id }) =>
      http("GET", `/v1/customers/${id}`),
    ),
    tool("query_db", "Run one SQL statement on the orders database", { sql: z.string() }, async ({ sql }) => {
      const client = new pg.Client({
        host: "db.internal.test",
        port: 5432,
        user: "agent",
        database: "airlock",
        connectionTimeoutMillis: 10_000,
      });
      try {
        await client.connect();
        const r = await client.query(sql);
        return text(JSON.stringify({ command: r.command, rows: r.rows }));
      } catch (err) {
        const e = err as { code?: string; message?: string };
        return text(`ERROR ${e.code ?? ""}: ${e.message ?? String(err)}`, true);
      } finally {
        await client.end().catch(() => undefined);
      }
    }),
    tool(
      "refund",
      "Refund an order through the payments API",
      { order: z.string(), amount: z.number() },
      ({ order, amount }) => http("POST", "/v1/refunds", { order, amount }),
    ),
  ],
});

const seen = new Set<string>();
let stderr = "";
try {
  for await (const message of query({
    prompt: "Ticket 7: the customer 42 was double charged on order ord_1001. Check and refund 25.",
    options: {
      model: "claude-sonnet-4-5",
      // The ticketing system's own MCP server, over Streamable HTTP: its URL is the real one, the
      // sidecar is in the path because the pod's egress is.
      mcpServers: { crm, tickets: { type: "http", url: "http://mcp.internal.test:8088/mcp" } },
      tools: [],
      allowedTools: [
        "mcp__crm__get_customer",
        "mcp__crm__query_db",
        "mcp__crm__refund",
        "mcp__tickets__lookup_customer",
        "mcp__tickets__delete_database",
      ],
      permissionMode: "dontAsk",
      settingSources: [],
      maxTurns: 12,
      stderr: (d) => {
        stderr += d;
      },
    },
  })) {
    const kind = "subtype" in message ? `${message.type}/${message.subtype}` : message.type;
    if (!seen.has(kind)) print({ message: kind });
    seen.add(kind);
    if (message.type === "result")
      print({
        result: message.subtype === "success" ? message.result : null,
        subtype: message.subtype,
        isError: message.is_error,
        turns: message.num_turns,
      });
  }
} catch (err) {
  print({ error: (err as Error).message, stderr: stderr.slice(-4000) });
  process.exitCode = 1;
}
