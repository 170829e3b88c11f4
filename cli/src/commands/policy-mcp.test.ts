// `airlock policy test --mcp`: MCP requests read by the MCP guard's parser and judged offline.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { command } from "./policy.ts";

const dir = mkdtempSync(join(tmpdir(), "airlock-policy-mcp-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, "policy.yaml");
writeFileSync(
  file,
  `apiVersion: airlock.dev/v1alpha1
kind: AgentAccessPolicy
metadata: { name: tools, namespace: agents }
spec:
  connections:
    - { name: ops, protocol: mcp, target: { host: mcp.internal, port: 443 } }
    - { name: web, protocol: http, target: { host: api.internal, port: 443 } }
  rules:
    - { name: no-destruction, action: deny, connections: [ops], match: { mcp: { tools: ["delete_*"] } } }
    - { name: no-prod, action: deny, connections: [ops], match: { mcp: { tools: [get_weather], when: 'args.city == "Prod"' } } }
    - { name: session, action: allow, connections: [ops], match: { mcp: { methods: [initialize, tools/list] } } }
    - { name: weather, action: allow, connections: [ops], match: { mcp: { tools: [get_weather] } } }
    - { name: docs, action: allow, connections: [ops], match: { mcp: { resources: ["file:///docs/**"] } } }
    - { name: roots, action: allow, connections: [ops], match: { mcp: { serverRequests: [roots/list] } } }
    - name: reports
      action: requireApproval
      connections: [ops]
      match: { mcp: { tools: [run_report] } }
      approval: { approvers: { groups: [sre] } }
`,
);

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const o = vi.spyOn(process.stdout, "write").mockImplementation((c) => {
    out.push(String(c));
    return true;
  });
  const e = vi.spyOn(process.stderr, "write").mockImplementation((c) => {
    err.push(String(c));
    return true;
  });
  try {
    const code = await command.run(args);
    return { code, out: out.join(""), err: err.join("") };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}
const decide = async (mcp: string, connection = "ops") => {
  const r = await run(["test", "--policy", file, "--connection", connection, "--mcp", mcp]);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out);
};

describe("airlock policy test --mcp", () => {
  it("judges match.mcp.when on ARGS_JSON, failing closed when it cannot be evaluated", async () => {
    expect(await decide('tools/call get_weather {"city": "Prod"}')).toMatchObject({
      decision: "deny",
      rule: "no-prod",
    });
    expect(await decide('tools/call get_weather {"city": "Oslo"}')).toMatchObject({ rule: "weather" });
    expect(await decide("tools/call get_weather")).toMatchObject({
      decision: "deny",
      rule: "no-prod",
      reason: expect.stringMatching(/fail closed: its when could not be evaluated: No such key: city/),
    });
  });

  it("decides like the MCP guard", async () => {
    expect(await decide('tools/call get_weather {"city": "Oslo"}')).toMatchObject({
      decision: "allow",
      rule: "weather",
    });
    expect(await decide("tools/call delete_everything")).toMatchObject({
      decision: "deny",
      rule: "no-destruction",
    });
    expect(await decide("tools/call send_email {}")).toMatchObject({
      decision: "deny",
      rule: null,
      reason: "no rule allows this operation (default deny)",
    });
    expect(await decide("tools/call run_report {}")).toMatchObject({
      decision: "requireApproval",
      rule: "reports",
    });
    expect(await decide("tools/list")).toMatchObject({ decision: "allow", rule: "session" });
    expect(await decide("resources/read file:///docs/a/b.md")).toMatchObject({
      decision: "allow",
      rule: "docs",
    });
    expect(await decide("prompts/get summarize")).toMatchObject({ decision: "deny" });
  });
  it("judges the server's requests as such", async () => {
    expect(await decide("roots/list")).toEqual({
      decision: "allow",
      policy: "agents/tools",
      rule: "roots",
      reason: expect.any(String),
      origin: "server",
    });
    expect(await decide("sampling/createMessage")).toMatchObject({ decision: "deny", origin: "server" });
  });
  it.each([
    ["tools/call get_weather {city}", /the arguments are not JSON/],
    ["tools/call get_weather [1]", /must be a JSON object/],
    ["tools/call", /needs a tool name/],
    ["resources/read", /takes one URI/],
    ["tools/list extra", /takes no arguments/],
  ])("%s is refused as bad input (exit 2)", async (mcp, message) => {
    const r = await run(["test", "--policy", file, "--connection", "ops", "--mcp", mcp]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
  });
  it("needs an mcp connection, and --help says how", async () => {
    const r = await run(["test", "--policy", file, "--connection", "web", "--mcp", "tools/list"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--mcp needs a protocol mcp connection; web speaks http/);
    const help = await run(["test", "--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/--mcp "METHOD \.\.\."/);
    expect(help.out).toContain("tools/call NAME [ARGS_JSON]");
  });
});
