// Requests an MCP server sends to the agent (sampling, elicitation, roots), with real peers: the
// TypeScript SDK's stateful McpServer asks them in a tool call's own stream or on the session's
// GET stream, and the SDK's Client, which would answer every one of them, sits behind the sidecar.
// Refused ones never reach the client: the server gets the sidecar's JSON-RPC error instead.
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sidecar } from "../http/harness.ts";
import { type McpThroughSidecar, mcpConnection, mcpThroughSidecar } from "./through-sidecar.ts";

describe("MCP server-to-client requests (stateful SDK server, SDK client with every capability)", () => {
  let mcp: McpThroughSidecar;
  let sidecar: Sidecar;
  let client: Client;
  /** What reached the client's own handlers. */
  const asked: string[] = [];

  beforeAll(async () => {
    mcp = await mcpThroughSidecar({
      server: { stateful: true },
      policy: "mcp-server-requests",
      listen: "ops-mcp",
      spec: (upstream) => ({
        connections: [mcpConnection("ops-mcp", upstream)],
        rules: [
          {
            name: "session",
            action: "allow",
            connections: ["ops-mcp"],
            match: { mcp: { methods: ["initialize", "ping", "tools/list"] } },
          },
          {
            name: "asking-tools",
            action: "allow",
            connections: ["ops-mcp"],
            match: { mcp: { tools: ["ask_*", "list_roots*"] } },
          },
          {
            name: "roots",
            action: "allow",
            connections: ["ops-mcp"],
            match: { mcp: { serverRequests: ["roots/list"] } },
          },
        ],
      }),
    });
    ({ sidecar } = mcp);
    ({ client } = await mcp.connect({
      client: { capabilities: { sampling: {}, elicitation: { form: {} }, roots: {} } },
      setUp: (c) => {
        c.setRequestHandler(CreateMessageRequestSchema, async () => {
          asked.push("sampling/createMessage");
          return { role: "assistant", content: { type: "text", text: "model says hi" }, model: "m" };
        });
        c.setRequestHandler(ElicitRequestSchema, async () => {
          asked.push("elicitation/create");
          return { action: "accept", content: { password: "hunter2" } };
        });
        c.setRequestHandler(ListRootsRequestSchema, async () => {
          asked.push("roots/list");
          return { roots: [{ uri: "file:///work", name: "work" }] };
        });
      },
    }));
  });

  afterAll(() => mcp?.close());

  const text = (r: Awaited<ReturnType<Client["callTool"]>>) =>
    (r.content as { type: string; text: string }[])[0]?.text ?? "";
  const serverEvents = (method: string) =>
    sidecar.audit.filter(
      (e) => e.operation.kind === "mcp" && e.operation.origin === "server" && e.operation.method === method,
    );
  const counted = async (labels: string) => {
    const t = await sidecar.metrics.registry.getSingleMetricAsString("airlock_mcp_server_requests_total");
    return Number(
      new RegExp(`^airlock_mcp_server_requests_total\\{${labels}\\} (\\d+)$`, "m").exec(t)?.[1] ?? 0,
    );
  };

  it("sampling in a call's stream is refused: not delivered, the server gets the error, audited and counted", async () => {
    const r = await client.callTool({ name: "ask_model", arguments: {} });
    expect(text(r)).toMatch(
      /^error: MCP error -32010: Airlock refused sampling\/createMessage from the server: no rule allows it \(default deny\) of policy agents\/mcp-server-requests/,
    );
    expect(asked).not.toContain("sampling/createMessage");
    const [ev] = serverEvents("sampling/createMessage");
    expect(ev?.operation).toMatchObject({ kind: "mcp", method: "sampling/createMessage", origin: "server" });
    expect(ev?.decision).toMatchObject({ action: "deny" });
    expect(await counted('connection="ops-mcp",method="sampling/createMessage",decision="deny"')).toBe(1);
  });

  it("elicitation is refused the same way (a password prompt never reaches the agent)", async () => {
    const r = await client.callTool({ name: "ask_user", arguments: {} });
    expect(text(r)).toMatch(/^error: MCP error -32010: Airlock refused elicitation\/create from the server/);
    expect(asked).not.toContain("elicitation/create");
    expect(serverEvents("elicitation/create")).toHaveLength(1);
  });

  it("roots/list, which a rule allows, reaches the client and its answer reaches the server", async () => {
    const r = await client.callTool({ name: "list_roots", arguments: {} });
    expect(text(r)).toBe(`answer: ${JSON.stringify({ roots: [{ uri: "file:///work", name: "work" }] })}`);
    expect(asked).toEqual(["roots/list"]);
    expect(serverEvents("roots/list")[0]?.decision).toMatchObject({ action: "allow", rule: "roots" });
    expect(await counted('connection="ops-mcp",method="roots/list",decision="allow"')).toBe(1);
  });

  it("on the GET stream too: sampling refused, roots/list relayed", async () => {
    const refused = await client.callTool({ name: "ask_model_later", arguments: {} });
    expect(text(refused)).toMatch(
      /^error: MCP error -32010: Airlock refused sampling\/createMessage from the server/,
    );
    const roots = await client.callTool({ name: "list_roots_later", arguments: {} });
    expect(text(roots)).toMatch(/^answer: .*file:\/\/\/work/);
    expect(asked).toEqual(["roots/list", "roots/list"]);
    expect(await counted('connection="ops-mcp",method="sampling/createMessage",decision="deny"')).toBe(2);
  });
});
