// Masking on an MCP connection with real peers: the SDK's McpServer answers lookup_customer with an
// email and a card number in its text content, in its structuredContent (validated by the SDK
// client against the tool's outputSchema) and in a log notification it sends ahead of the result;
// the SDK's Client calls it through the sidecar. Once from a server that streams its answer (SSE,
// the notification and the result as separate events), once from one that answers with one JSON
// body. Request-side masking rewrites the arguments the server receives.
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { LoggingMessageNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sidecar } from "../http/harness.ts";
import { CUSTOMER, type McpUpstream } from "./server.ts";
import { type McpThroughSidecar, mcpConnection, mcpThroughSidecar } from "./through-sidecar.ts";

const CARD_DIGITS = CUSTOMER.card.replaceAll(" ", "");

describe.each([
  ["an SSE stream", false],
  ["one JSON body", true],
])("masked MCP results from a server answering in %s", (_how, json) => {
  let mcp: McpThroughSidecar;
  let upstream: McpUpstream;
  let sidecar: Sidecar;
  let client: Client;
  const logs: unknown[] = [];

  beforeAll(async () => {
    mcp = await mcpThroughSidecar({
      server: { json },
      policy: "mcp-masking",
      listen: "crm",
      spec: (upstream) => ({
        connections: [mcpConnection("crm", upstream)],
        rules: [
          {
            name: "session",
            action: "allow",
            connections: ["crm"],
            match: { mcp: { methods: ["initialize", "ping", "tools/list", "logging/setLevel"] } },
          },
          {
            name: "crm-tools",
            action: "allow",
            connections: ["crm"],
            match: { mcp: { tools: ["lookup_customer", "get_weather", "export_customers"] } },
          },
        ],
        masking: [
          { name: "pii", connections: ["crm"], detectors: ["email", "creditCard"], strategy: "redact" },
          {
            name: "accounts",
            connections: ["crm"],
            fields: ["$..account"],
            strategy: "redact",
            direction: "request",
          },
        ],
      }),
    });
    ({ upstream, sidecar } = mcp);
    ({ client } = await mcp.connect({
      setUp: (c) =>
        c.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
          logs.push(n.params.data);
        }),
    }));
  });

  afterAll(() => mcp?.close());

  it("text content and structuredContent reach the agent masked, and still pass the output schema", async () => {
    const r = await client.callTool({ name: "lookup_customer", arguments: {} });
    expect(upstream.calls).toContain("lookup_customer");
    const [text] = r.content as { type: string; text: string }[];
    expect(text?.type).toBe("text");
    expect(text?.text).toMatch(/^customer \S+ card /);
    expect(r.structuredContent).toMatchObject({ plan: "gold" });
    const shown = JSON.stringify(r);
    expect(shown).not.toContain(CUSTOMER.email);
    expect(shown).not.toContain(CUSTOMER.card);
    expect(shown.replaceAll(" ", "")).not.toContain(CARD_DIGITS);
    const structured = r.structuredContent as Record<string, string>;
    expect(structured.email).not.toBe(CUSTOMER.email);
    expect(structured.card).not.toBe(CUSTOMER.card);
  });

  it("a large result (~150 KB, many TCP chunks) is masked throughout", async () => {
    const r = await client.callTool({ name: "export_customers", arguments: {} });
    const text = (r.content as { text: string }[])[0]?.text ?? "";
    const rows = text.split("\n");
    expect(rows).toHaveLength(2000);
    expect(rows[1999]).toMatch(/^row 1999: /);
    expect(text).not.toMatch(/@example\.com/);
    expect(text.replaceAll(" ", "")).not.toContain(CARD_DIGITS);
  });

  it("a notification sent ahead of the result is masked as well", async () => {
    // A JSON answer carries the result alone (the SDK server drops what it cannot send there).
    const seen = logs.filter((l) => String(l).startsWith("looking up "));
    expect(seen.length).toBe(json ? 0 : 1);
    expect(JSON.stringify(logs)).not.toContain(CUSTOMER.email);
  });

  it("masked counts are audited with the tool call", async () => {
    const ev = sidecar.audit.find(
      (e) => e.operation.kind === "mcp" && e.operation.tool === "lookup_customer",
    );
    expect(ev?.decision).toMatchObject({ action: "allow", rule: "crm-tools" });
    expect(JSON.stringify(ev)).not.toContain(CUSTOMER.email);
    expect(ev?.masked).toMatchObject({ email: expect.any(Number), creditCard: expect.any(Number) });
  });

  it("request masking rewrites the arguments the server receives", async () => {
    await client.callTool({ name: "get_weather", arguments: { arg: "Oslo", account: "acct-4417" } });
    expect(upstream.args.at(-1)).toEqual({ arg: "Oslo", account: "[REDACTED]" });
    expect(JSON.stringify(sidecar.audit)).not.toContain("acct-4417");
  });
});
