// match.mcp.when (CEL over tools/call arguments) with real MCP peers: the SDK's Client through the
// sidecar to the SDK's McpServer. A conditional deny, a conditional allow, a conditional approval;
// an expression that cannot be evaluated fails closed; tools/list is not narrowed by conditions.
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sidecar } from "../http/harness.ts";
import type { McpUpstream } from "./server.ts";
import { type McpThroughSidecar, mcpConnection, mcpThroughSidecar } from "./through-sidecar.ts";

describe("MCP argument conditions (SDK server and client through the sidecar)", () => {
  let mcp: McpThroughSidecar;
  let upstream: McpUpstream;
  let sidecar: Sidecar;
  let client: Client;
  let base: string;

  beforeAll(async () => {
    mcp = await mcpThroughSidecar({
      policy: "mcp-when",
      listen: "ops",
      spec: (upstream) => ({
        connections: [mcpConnection("ops", upstream)],
        rules: [
          {
            name: "no-accounts",
            action: "deny",
            connections: ["ops"],
            match: { mcp: { tools: ["get_weather"], when: "has(args.account)" } },
          },
          {
            name: "q4-needs-sign-off",
            action: "requireApproval",
            connections: ["ops"],
            match: { mcp: { tools: ["run_report"], when: 'args.arg.startsWith("q4")' } },
            approval: { approvers: { groups: ["finance"] } },
          },
          {
            name: "session",
            action: "allow",
            connections: ["ops"],
            match: { mcp: { methods: ["initialize", "ping", "tools/list"] } },
          },
          {
            name: "tools",
            action: "allow",
            connections: ["ops"],
            match: { mcp: { tools: ["get_weather", "run_report"] } },
          },
          {
            name: "internal-mail",
            action: "allow",
            connections: ["ops"],
            match: { mcp: { tools: ["send_email"], when: 'args.arg.endsWith("@example.com")' } },
          },
        ],
      }),
    });
    ({ upstream, sidecar, base } = mcp);
    ({ client } = await mcp.connect());
  });

  afterAll(() => mcp?.close());

  const refusal = (p: Promise<unknown>) => p.then(() => undefined).catch((e: unknown) => e as McpError);

  it("tools/list shows tools that some call may use; a conditional approval says it may apply", async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => [t.name, t.description])).toEqual([
      ["get_weather", "get_weather tool"],
      ["send_email", "send_email tool"],
      ["run_report", "run_report tool (may require approval)"],
    ]);
  });

  it("a conditional allow admits the calls its condition holds for, and only those", async () => {
    const ok = await client.callTool({ name: "send_email", arguments: { arg: "ann@example.com" } });
    expect(ok.content).toEqual([{ type: "text", text: "send_email done" }]);
    const err = await refusal(client.callTool({ name: "send_email", arguments: { arg: "x@evil.test" } }));
    expect(err?.code).toBe(-32010);
    expect(err?.message).toMatch(/send_email: no rule allows it \(default deny\)/);
    expect(upstream.args.filter((a) => a.arg === "x@evil.test")).toEqual([]);
  });

  it("a conditional deny refuses by its rule; other arguments pass", async () => {
    const err = await refusal(
      client.callTool({ name: "get_weather", arguments: { arg: "Oslo", account: "acct-1" } }),
    );
    expect(err?.message).toMatch(/get_weather: rule no-accounts of policy agents\/mcp-when/);
    expect(err?.data).toMatchObject({ airlock: { decision: "deny", rule: "no-accounts" } });
    const ok = await client.callTool({ name: "get_weather", arguments: { arg: "Oslo" } });
    expect(ok.content).toEqual([{ type: "text", text: "get_weather done" }]);
    expect(upstream.args.some((a) => a.account === "acct-1")).toBe(false);
  });

  it("a conditional approval holds the calls it names; others run", async () => {
    const held = await refusal(client.callTool({ name: "run_report", arguments: { arg: "q4-2026" } }));
    expect(held?.data).toMatchObject({
      airlock: { decision: "requireApproval", rule: "q4-needs-sign-off", error: "approval_unavailable" },
    });
    const ok = await client.callTool({ name: "run_report", arguments: { arg: "q3-2026" } });
    expect(ok.content).toEqual([{ type: "text", text: "run_report done" }]);
    expect(upstream.args.map((a) => a.arg)).not.toContain("q4-2026");
  });

  it("fails closed when a condition cannot be evaluated, saying which rule's condition failed", async () => {
    // No arg: the approval rule's args.arg is a missing key, so it applies.
    const held = await refusal(client.callTool({ name: "run_report", arguments: {} }));
    expect(held?.data).toMatchObject({ airlock: { rule: "q4-needs-sign-off" } });
    const ev = sidecar.audit.findLast((e) => e.decision.rule === "q4-needs-sign-off");
    expect(ev?.decision.reason).toMatch(/fail closed: its when could not be evaluated: No such key: arg/);
    // The allow rule's condition fails: default deny, naming it.
    const mail = await refusal(client.callTool({ name: "send_email", arguments: {} }));
    expect(mail?.message).toMatch(
      /default deny\); rule internal-mail's when could not be evaluated \(No such key: arg\)/,
    );
    expect(upstream.calls.filter((t) => t === "run_report")).toHaveLength(1);
  });

  it("in a batch each call is judged on its own arguments; one refused refuses the batch", async () => {
    const before = upstream.requests;
    const res = await fetch(`${base}/mcp`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify([
        {
          jsonrpc: "2.0",
          id: 1,
          method: "tools/call",
          params: { name: "get_weather", arguments: { arg: "a" } },
        },
        {
          jsonrpc: "2.0",
          id: 2,
          method: "tools/call",
          params: { name: "get_weather", arguments: { arg: "b", account: "acct-2" } },
        },
      ]),
    });
    const body = (await res.json()) as { id: number; error: { message: string } }[];
    expect(body.map((m) => m.id)).toEqual([1, 2]);
    expect(body[0]?.error.message).toMatch(/whole batch/);
    expect(body[1]?.error.message).toMatch(/rule no-accounts/);
    expect(upstream.requests).toBe(before);
  });

  it("the audit says the decision and the rule, never the arguments", () => {
    const text = JSON.stringify(sidecar.audit);
    expect(text).not.toContain("x@evil.test");
    expect(text).not.toContain("acct-1");
    expect(text).not.toContain("acct-2");
    const ev = sidecar.audit.find((e) => e.decision.rule === "no-accounts");
    expect(ev?.operation).toEqual({ kind: "mcp", method: "tools/call", tool: "get_weather" });
  });
});
