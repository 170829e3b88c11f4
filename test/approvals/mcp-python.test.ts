// The Python MCP SDK (the venv .ci/run builds: ~/.cache/airlock/mcp-venv, override with
// AIRLOCK_MCP_PYTHON) as the agent of an approval on the real API server: the sidecar in
// Kubernetes mode holds its tools/call, answers at the connection's wait limit with an error the
// client can act on (the AccessRequest's name, who approves), an approver runs `kubectl airlock
// approve`, and the agent's retry — a new process, a new MCP session — goes through.
import { execFile, execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apply, connect } from "../envtest/connect.ts";
import { freePort } from "../harness/postgres.ts";
import { type McpUpstream, startMcpServer } from "../mcp/server.ts";
import { mcpConnection } from "../mcp/through-sidecar.ts";
import { agentPolicy, type Cluster, plugin, setUpCluster } from "./cluster.ts";
import { type PodSidecar, startPodSidecar } from "./pod-sidecar.ts";

const PYTHON =
  process.env.AIRLOCK_MCP_PYTHON ?? join(homedir(), ".cache", "airlock", "mcp-venv", "bin", "python");
const SCRIPT = join(import.meta.dirname, "..", "mcp", "python", "client.py");
const available = (() => {
  if (!existsSync(PYTHON)) return false;
  try {
    execFileSync(PYTHON, ["-c", "import mcp"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
if (!available)
  console.warn(`Python MCP approval suite skipped: ${PYTHON} cannot import mcp (.ci/run installs it)`);

interface CallReport {
  error?: { code: number; message: string; data?: { airlock?: Record<string, unknown> } };
  content?: { type: string; text?: string }[];
}

const callTool = (url: string, tool: string, args: unknown) =>
  new Promise<CallReport>((resolve, reject) => {
    execFile(
      PYTHON,
      [SCRIPT, url, "call", tool, JSON.stringify(args)],
      { timeout: 30_000 },
      (err, out, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(out) as CallReport),
    );
  });

describe.skipIf(!available)("Python MCP client held for approval on the real API server", () => {
  const k8s = connect();
  let c: Cluster;
  let upstream: McpUpstream;
  let pod: PodSidecar;
  let url: string;

  beforeAll(async () => {
    c = await setUpCluster(k8s, "mcp-python");
    upstream = await startMcpServer();
    const port = await freePort();
    await apply(
      k8s,
      agentPolicy(c, "ops", {
        connections: [
          mcpConnection("ops-mcp", upstream, { listen: { port }, mcp: { approvalWaitSeconds: 2 } }),
        ],
        rules: [
          {
            name: "session",
            action: "allow",
            connections: ["ops-mcp"],
            match: { mcp: { methods: ["initialize", "ping", "tools/list"] } },
          },
          {
            name: "reports",
            action: "requireApproval",
            connections: ["ops-mcp"],
            match: { mcp: { tools: ["run_report"] } },
            approval: { approvers: { groups: ["dba"] }, timeout: "5m" },
          },
        ],
      }),
    );
    pod = await startPodSidecar(c);
    url = `http://127.0.0.1:${port}/mcp`;
  });

  afterAll(async () => {
    await pod?.close();
    await upstream?.close();
  });

  it("gets approval_pending naming the request and who approves; retried after kubectl airlock approve, it runs", async () => {
    const args = { arg: "python-q4" };
    const first = await callTool(url, "run_report", args);
    expect(first.error?.code).toBe(-32010);
    const airlock = first.error?.data?.airlock as { approval: { request: string; status: string } };
    expect(airlock).toMatchObject({ rule: "reports", error: "approval_pending", hint: expect.any(String) });
    expect(airlock.approval.status).toBe("pending");
    const name = airlock.approval.request;
    expect(first.error?.message).toContain(`kubectl airlock approve ${name} -n ${c.ns}`);
    expect((await c.get(name)).spec.operation.summary).toMatch(
      /^tools\/call run_report \{"arg":"python-q4"\}/,
    );
    expect(upstream.calls).toEqual([]);

    const approved = await plugin(["approve", name, "-n", c.ns], c.users.ann);
    expect(approved.code, approved.stderr).toBe(0);
    const before = (await c.list()).length;
    const second = await callTool(url, "run_report", args);
    expect(second.error).toBeUndefined();
    expect(second.content).toEqual([{ type: "text", text: "run_report done" }]);
    expect(upstream.calls).toEqual(["run_report"]);
    expect((await c.list()).length).toBe(before);
  });
});
