// The Python MCP SDK (`mcp`, from the venv .ci/run builds: ~/.cache/airlock/mcp-venv, override
// with AIRLOCK_MCP_PYTHON) as a second client, through the sidecar to the TypeScript SDK's
// McpServer: a filtered tools/list, an allowed call, a denied call whose JSON-RPC error names the
// rule, a default-deny refusal, an approval refusal whose data the client can act on, and a result
// masked in its text and structuredContent.
import { execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sidecar } from "../http/harness.ts";
import { CUSTOMER, type McpUpstream } from "./server.ts";
import { type McpThroughSidecar, mcpConnection, mcpThroughSidecar } from "./through-sidecar.ts";

const PYTHON =
  process.env.AIRLOCK_MCP_PYTHON ?? join(homedir(), ".cache", "airlock", "mcp-venv", "bin", "python");
const SCRIPT = join(import.meta.dirname, "python", "client.py");

function hasMcp(): boolean {
  if (!existsSync(PYTHON)) return false;
  try {
    execFileSync(PYTHON, ["-c", "import mcp"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const available = hasMcp();
if (!available)
  console.warn(`Python MCP client suite skipped: ${PYTHON} cannot import mcp (.ci/run installs it)`);

interface CallReport {
  error?: { code: number; message: string; data?: { airlock?: Record<string, unknown> } };
  isError?: boolean;
  content?: { type: string; text?: string }[];
  structuredContent?: Record<string, unknown> | null;
}
interface Report {
  protocolVersion: string;
  tools: [string, string | null][];
  allowed: CallReport;
  denied: CallReport;
  unlisted: CallReport;
  masked: CallReport;
  approval: CallReport;
}

/** Runs the client without blocking the event loop (the sidecar under test runs in this process). */
const runClient = (url: string) =>
  new Promise<{ report: Report; stderr: string }>((resolve, reject) => {
    execFile(PYTHON, [SCRIPT, url], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${err.message}\n${stderr}`));
      resolve({ report: JSON.parse(stdout) as Report, stderr });
    });
  });

describe.skipIf(!available)("Python MCP SDK client through the sidecar", () => {
  let mcp: McpThroughSidecar;
  let upstream: McpUpstream;
  let sidecar: Sidecar;
  let report: Report;

  beforeAll(async () => {
    mcp = await mcpThroughSidecar({
      policy: "mcp-python",
      listen: "crm",
      spec: (upstream) => ({
        connections: [mcpConnection("crm", upstream)],
        rules: [
          {
            name: "no-destruction",
            action: "deny",
            connections: ["crm"],
            match: { mcp: { tools: ["delete_*"] } },
          },
          {
            name: "session",
            action: "allow",
            connections: ["crm"],
            match: { mcp: { methods: ["initialize", "ping", "tools/list"] } },
          },
          {
            name: "crm-tools",
            action: "allow",
            connections: ["crm"],
            match: { mcp: { tools: ["get_weather", "lookup_customer"] } },
          },
          {
            name: "reports",
            action: "requireApproval",
            connections: ["crm"],
            match: { mcp: { tools: ["run_report"] } },
            approval: { approvers: { groups: ["sre"] } },
          },
        ],
        masking: [
          { name: "pii", connections: ["crm"], detectors: ["email", "creditCard"], strategy: "redact" },
        ],
      }),
    });
    ({ upstream, sidecar } = mcp);
    ({ report } = await runClient(`${mcp.base}/mcp`));
  });

  afterAll(() => mcp?.close());

  it("connects (the server/discover probe is refused by default deny; the client falls back to initialize)", () => {
    expect(report.protocolVersion).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    const probe = sidecar.audit.find(
      (e) => e.operation.kind === "mcp" && e.operation.method === "server/discover",
    );
    // mcp 2.x probes the 2026 protocol first; the TypeScript server speaks the 2025 one.
    expect(probe?.decision).toMatchObject({ action: "deny" });
    expect(report.protocolVersion).toBe("2025-11-25");
    const init = sidecar.audit.find((e) => e.operation.kind === "mcp" && e.operation.method === "initialize");
    expect(init?.decision).toMatchObject({ action: "allow", rule: "session" });
  });

  it("tools/list shows only what the agent may call; the approval tool says so", () => {
    expect(report.tools).toEqual([
      ["get_weather", "get_weather tool"],
      ["run_report", "run_report tool (requires approval)"],
      ["lookup_customer", "lookup_customer tool"],
    ]);
  });

  it("an allowed call returns the server's result", () => {
    expect(report.allowed.error).toBeUndefined();
    expect(report.allowed.content).toEqual([{ type: "text", text: "get_weather done" }]);
    expect(upstream.args).toContainEqual({ arg: "Oslo" });
  });

  it("a denied call raises MCPError -32010 naming the rule; nothing reaches the server", () => {
    expect(report.denied.error?.code).toBe(-32010);
    expect(report.denied.error?.message).toMatch(
      /Airlock refused tools\/call delete_database: rule no-destruction of policy agents\/mcp-python/,
    );
    expect(report.denied.error?.data?.airlock).toMatchObject({
      decision: "deny",
      rule: "no-destruction",
      tool: "delete_database",
    });
    expect(report.unlisted.error?.code).toBe(-32010);
    expect(report.unlisted.error?.message).toMatch(/send_email: no rule allows it \(default deny\)/);
    expect(upstream.calls).not.toContain("delete_database");
    expect(upstream.calls).not.toContain("send_email");
  });

  it("a call needing approval raises MCPError whose data says what happened and what to do", () => {
    expect(report.approval.error?.code).toBe(-32010);
    expect(report.approval.error?.message).toMatch(/did not forward tools\/call run_report: rule reports/);
    expect(report.approval.error?.data?.airlock).toMatchObject({
      decision: "requireApproval",
      rule: "reports",
      error: "approval_unavailable",
      hint: "ask an operator to configure Airlock approvals",
    });
    expect(upstream.calls).not.toContain("run_report");
  });

  it("a result with PII arrives masked in text and structuredContent", () => {
    const m = report.masked;
    expect(m.error).toBeUndefined();
    expect(m.content?.[0]?.text).toMatch(/^customer \S+ card /);
    expect(m.structuredContent).toMatchObject({ plan: "gold" });
    const shown = JSON.stringify(m);
    expect(shown).not.toContain(CUSTOMER.email);
    expect(shown.replaceAll(" ", "")).not.toContain(CUSTOMER.card.replaceAll(" ", ""));
    expect(upstream.calls).toContain("lookup_customer");
  });
});
