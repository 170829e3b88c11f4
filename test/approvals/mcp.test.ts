// Approvals for MCP tool calls end to end: the official SDK's Client → the sidecar in Kubernetes mode
// (policy from a real kube-apiserver, the Kubernetes approval gate) → the SDK's McpServer. A tools/call
// matched by a requireApproval rule creates an AccessRequest and waits; approvers decide with the
// real `kubectl-airlock` plugin, as in kubernetes.test.ts.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Rule } from "../../api/src/index.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import { apply, connect } from "../envtest/connect.ts";
import { freePort } from "../harness/postgres.ts";
import { type McpUpstream, startMcpServer } from "../mcp/server.ts";
import { mcpConnection } from "../mcp/through-sidecar.ts";
import { agentPolicy, type Cluster, plugin, setUpCluster, until } from "./cluster.ts";
import { type PodSidecar, startPodSidecar } from "./pod-sidecar.ts";

const k8s = connect();
let c: Cluster;
let upstream: McpUpstream;
/** Behind quick-mcp, whose calls wait 1 s for approval (mcp.approvalWaitSeconds). */
let quickUpstream: McpUpstream;
let quickBase: string;
let pod: PodSidecar;
let audit: AuditEvent[];
let client: Client;
let base: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const pendingFor = (tool: string) =>
  until(`an AccessRequest for ${tool}`, async () =>
    (await c.list()).find(
      (o) =>
        o.spec.operation.summary.startsWith(`tools/call ${tool} `) &&
        (o.status?.phase ?? "Pending") === "Pending",
    ),
  );

const SUMMARY = /^tools\/call (\w+) (\{.*\}) \(arguments digest [0-9a-f]{16}\)$/;

beforeAll(async () => {
  c = await setUpCluster(k8s, "mcp-approvals");
  upstream = await startMcpServer();
  quickUpstream = await startMcpServer();
  const listenPort = await freePort();
  const quickPort = await freePort();
  const rule = (name: string, tool: string, approval: { timeout?: string } = {}): Rule => ({
    name,
    action: "requireApproval",
    connections: ["ops-mcp"],
    match: { mcp: { tools: [tool] } },
    approval: { approvers: { groups: ["dba"] }, timeout: "45s", ...approval },
  });
  await apply(
    k8s,
    agentPolicy(c, "ops", {
      connections: [
        mcpConnection("ops-mcp", upstream, { listen: { port: listenPort } }),
        mcpConnection("quick-mcp", quickUpstream, {
          listen: { port: quickPort },
          mcp: { approvalWaitSeconds: 1 },
        }),
      ],
      rules: [
        {
          name: "session",
          action: "allow",
          connections: ["ops-mcp", "quick-mcp"],
          match: { mcp: { methods: ["initialize", "ping", "tools/list"] } },
        },
        rule("reports", "run_report"),
        rule("slow", "slow_report", { timeout: "2s" }),
        { ...rule("quick", "run_report"), connections: ["quick-mcp"] },
      ],
      masking: [
        {
          name: "accounts",
          connections: ["ops-mcp"],
          fields: ["$..account"],
          strategy: "redact",
          direction: "request",
        },
      ],
    }),
  );
  pod = await startPodSidecar(c);
  audit = pod.audit;
  base = `http://127.0.0.1:${listenPort}`;
  quickBase = `http://127.0.0.1:${quickPort}`;
  client = new Client({ name: "agent", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)));
});

afterAll(async () => {
  await client?.close();
  await pod?.close();
  await upstream?.close();
  await quickUpstream?.close();
});

describe("MCP tool calls held for approval on the real API server", () => {
  it("tools/list marks the approval tools; a call waits, shows masked arguments, and runs once a dba approves", async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => [t.name, t.description])).toEqual([
      ["run_report", "run_report tool (requires approval)"],
      ["slow_report", "slow_report tool (requires approval)"],
    ]);

    const held = client.callTool({
      name: "run_report",
      arguments: { arg: "q3", account: "acct-778-secret" },
    });
    const req = await pendingFor("run_report");
    const name = req.metadata.name as string;
    expect(req.spec).toMatchObject({
      policy: `${c.ns}/ops`,
      rule: "reports",
      connection: "ops-mcp",
      requester: { serviceAccount: c.agentSubject, pod: "agent-0" },
      operation: { protocol: "mcp" },
      approvers: { groups: ["dba"] },
    });
    // The tool name and the arguments as request masking leaves them: the account never leaves.
    const shown = SUMMARY.exec(req.spec.operation.summary);
    expect(shown?.[1]).toBe("run_report");
    expect(JSON.parse(shown?.[2] ?? "")).toEqual({ arg: "q3", account: "[REDACTED]" });
    expect(JSON.stringify(req)).not.toContain("acct-778");
    await sleep(500);
    expect(upstream.calls).not.toContain("run_report");

    const approved = await plugin(["approve", name, "-n", c.ns], c.users.ann);
    expect(approved.code, approved.stderr).toBe(0);
    const result = await held;
    expect(result.content).toEqual([{ type: "text", text: "run_report done" }]);
    expect(upstream.calls.filter((t) => t === "run_report")).toHaveLength(1);
    // Forwarded with the request masking applied, like any MCP request on this connection.
    expect(upstream.args.at(-1)).toEqual({ arg: "q3", account: "[REDACTED]" });
    const ev = audit.find((e) => e.operation.kind === "mcp" && e.approval?.request === name);
    expect(ev).toMatchObject({
      operation: { kind: "mcp", method: "tools/call", tool: "run_report" },
      decision: { action: "requireApproval", rule: "reports" },
      approval: { request: name, approvers: ["ann"] },
    });
  });

  it("other arguments are another request; a denial answers with a JSON-RPC error naming the outcome", async () => {
    const first = (await c.list()).find((o) => o.spec.rule === "reports");
    const held = client.callTool({ name: "run_report", arguments: { arg: "q4" } }).catch((e: unknown) => e);
    const req = await pendingFor("run_report");
    const name = req.metadata.name as string;
    expect(name).not.toBe(first?.metadata.name);
    expect(req.spec.operation.fingerprint).not.toBe(first?.spec.operation.fingerprint);
    const denied = await plugin(["deny", name, "-n", c.ns, "--reason", "not this quarter"], c.users.bob);
    expect(denied.code, denied.stderr).toBe(0);
    const err = await held;
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(-32010);
    expect((err as McpError).message).toMatch(
      /did not forward tools\/call run_report: approval denied for rule reports .*not this quarter/,
    );
    expect((err as McpError).data).toMatchObject({
      airlock: {
        decision: "requireApproval",
        rule: "reports",
        tool: "run_report",
        error: "approval_denied",
        approval: { status: "denied", request: name },
      },
    });
    expect(upstream.calls.filter((t) => t === "run_report")).toHaveLength(1);
  });

  it("expires at the rule's timeout with an error saying so", async () => {
    const err = await client.callTool({ name: "slow_report", arguments: {} }).catch((e: unknown) => e);
    expect((err as McpError).code).toBe(-32010);
    expect((err as McpError).data).toMatchObject({
      airlock: { rule: "slow", error: "approval_expired", approval: { status: "expired" } },
    });
    expect((err as McpError).message).toMatch(/approval expired for rule slow/);
    expect(upstream.calls).not.toContain("slow_report");
  });

  it("the client cancelling (notifications/cancelled) ends the wait; nothing reaches the server", async () => {
    const ac = new AbortController();
    const held = client
      .callTool({ name: "run_report", arguments: { arg: "cancel-me" } }, undefined, { signal: ac.signal })
      .catch((e: unknown) => e);
    const req = await pendingFor("run_report");
    ac.abort("changed my mind");
    await held;
    const ev = await until("the canceled call's audit event", () =>
      audit.find(
        (e) =>
          e.operation.kind === "mcp" &&
          e.upstream?.error === "approval_pending" &&
          /canceled/.test(e.decision.reason),
      ),
    );
    expect(ev.decision.reason).toMatch(
      new RegExp(`the client canceled the wait for approval of rule reports \\(request ${req.metadata.name}`),
    );
    expect(upstream.calls.filter((t) => t === "run_report")).toHaveLength(1);
  });

  it("the client's own timeout ends the wait; approved meanwhile, the same call retried runs at once", async () => {
    // The TypeScript SDK's request timeout (60 s by default, 1.5 s here) is what an agent sees while
    // an approval is pending: the SDK cancels (notifications/cancelled), the AccessRequest stays.
    const args = { arg: "retry-me" };
    const timedOut = await client
      .callTool({ name: "run_report", arguments: args }, undefined, { timeout: 1500 })
      .catch((e: unknown) => e);
    expect(timedOut).toBeInstanceOf(McpError);
    expect((timedOut as McpError).message).toMatch(/Request timed out/);
    // (The canceled call above left its own request pending: pick this one by its arguments.)
    const req = await until("the request", async () =>
      (await c.list()).find(
        (o) =>
          o.spec.operation.summary.includes('"retry-me"') && (o.status?.phase ?? "Pending") === "Pending",
      ),
    );
    const ev = await until("the timed-out call's audit event", () =>
      audit.find(
        (e) =>
          e.upstream?.error === "approval_pending" && e.decision.reason.includes(req.metadata.name as string),
      ),
    );
    expect(ev.decision.reason).toMatch(/stays pending: a retry of the same operation picks it up/);
    expect(upstream.calls.filter((t) => t === "run_report")).toHaveLength(1);

    const approved = await plugin(["approve", req.metadata.name as string, "-n", c.ns], c.users.ann);
    expect(approved.code, approved.stderr).toBe(0);
    const before = (await c.list()).length;
    const started = Date.now();
    const result = await client.callTool({ name: "run_report", arguments: args });
    expect(result.content).toEqual([{ type: "text", text: "run_report done" }]);
    expect(Date.now() - started).toBeLessThan(5000);
    // The same AccessRequest answered the retry: none was created for it.
    expect((await c.list()).length).toBe(before);
    expect(upstream.calls.filter((t) => t === "run_report")).toHaveLength(2);
    expect(upstream.args.at(-1)).toEqual(args);
  });

  it("past mcp.approvalWaitSeconds the agent gets approval_pending naming the request and who approves; a retry once approved runs", async () => {
    const quick = new Client({ name: "agent", version: "1.0.0" });
    await quick.connect(new StreamableHTTPClientTransport(new URL(`${quickBase}/mcp`)));
    try {
      const started = Date.now();
      const err = await quick
        .callTool({ name: "run_report", arguments: { arg: "later" } })
        .catch((e: unknown) => e);
      const waited = Date.now() - started;
      expect(waited).toBeGreaterThanOrEqual(900);
      expect(waited).toBeLessThan(10_000);
      expect(err).toBeInstanceOf(McpError);
      const req = await until("the request", async () =>
        (await c.list()).find((o) => o.spec.rule === "quick" && (o.status?.phase ?? "Pending") === "Pending"),
      );
      const name = req.metadata.name as string;
      expect((err as McpError).code).toBe(-32010);
      expect((err as McpError).message).toMatch(
        new RegExp(
          `did not forward tools/call run_report: the connection's approval wait limit ended the wait for approval of rule quick \\(request ${name}, which stays pending: a retry of the same operation picks it up\\) \\(an approver runs: kubectl airlock approve ${name} -n ${c.ns}`,
        ),
      );
      expect((err as McpError).data).toMatchObject({
        airlock: {
          rule: "quick",
          error: "approval_pending",
          approval: { status: "pending", request: name, canceled: true },
        },
      });
      expect(quickUpstream.calls).toEqual([]);
      expect((await plugin(["approve", name, "-n", c.ns], c.users.ann)).code).toBe(0);
      const r = await quick.callTool({ name: "run_report", arguments: { arg: "later" } });
      expect(r.content).toEqual([{ type: "text", text: "run_report done" }]);
      expect(quickUpstream.calls).toEqual(["run_report"]);
    } finally {
      await quick.close();
    }
  });

  it("a closed connection ends the wait too", async () => {
    const before = audit.length;
    const ac = new AbortController();
    const sent = fetch(`${base}/mcp`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 77,
        method: "tools/call",
        params: { name: "run_report", arguments: { arg: "gone" } },
      }),
      signal: ac.signal,
    }).catch((e: unknown) => e);
    const req = await until("the request", async () =>
      (await c.list()).find(
        (o) => o.spec.operation.summary.includes('"gone"') && (o.status?.phase ?? "Pending") === "Pending",
      ),
    );
    ac.abort();
    await sent;
    // The guard audits the agent that went away (whichever notices first: the HTTP exchange or the
    // approval step), and nothing is left waiting to forward.
    const ev = await until("the abandoned call's audit event", () =>
      audit.slice(before).find((e) => e.operation.kind === "mcp" && e.upstream?.error !== undefined),
    );
    expect(ev.upstream?.error).toMatch(/^(agent_disconnected|approval_pending)$/);
    // An approval arriving later lets nothing through: the call is gone.
    expect((await plugin(["approve", req.metadata.name as string, "-n", c.ns], c.users.ann)).code).toBe(0);
    await sleep(1000);
    expect(upstream.calls.filter((t) => t === "run_report")).toHaveLength(2);
  });
});
