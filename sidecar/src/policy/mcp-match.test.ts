import { describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import { compilePolicies } from "./compile.ts";
import type { Operation, Subject } from "./types.ts";
import { validatePolicy } from "./validate.ts";

const subject: Subject = { serviceAccount: "system:serviceaccount:agents:bot", groups: [] };

const policy = (rules: unknown[], extra: unknown[] = []): AgentAccessPolicy =>
  ({
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: "mcp", namespace: "agents" },
    spec: {
      connections: [
        { name: "tools", protocol: "mcp", target: { host: "mcp.internal", port: 8080 } },
        { name: "web", protocol: "http", target: { host: "api.internal", port: 80 } },
        ...extra,
      ],
      rules,
    },
  }) as unknown as AgentAccessPolicy;

describe("match.mcp", () => {
  const { set, problems } = compilePolicies([
    policy([
      { name: "no-deletes", action: "deny", connections: ["tools"], match: { mcp: { tools: ["delete_*"] } } },
      {
        name: "session",
        action: "allow",
        connections: ["tools"],
        match: { mcp: { methods: ["initialize", "tools/list"] } },
      },
      {
        name: "reads",
        action: "allow",
        connections: ["tools"],
        match: { mcp: { tools: ["get_*", "delete_all"] } },
      },
      {
        name: "docs",
        action: "allow",
        connections: ["tools"],
        match: { mcp: { resources: ["file:///docs/**"] } },
      },
    ]),
  ]);
  const judge = (op: Operation) => set.evaluate("tools", subject, op);

  it("compiles", () => expect(problems).toEqual([]));
  it.each([
    [{ kind: "mcp", method: "tools/call", tool: "get_weather" }, "allow", "reads"],
    [{ kind: "mcp", method: "tools/call", tool: "delete_all" }, "deny", "no-deletes"],
    [{ kind: "mcp", method: "tools/call", tool: "write_file" }, "deny", undefined],
    [{ kind: "mcp", method: "tools/list" }, "allow", "session"],
    [{ kind: "mcp", method: "prompts/list" }, "deny", undefined],
    [{ kind: "mcp", method: "resources/read", resource: "file:///docs/a/b.md" }, "allow", "docs"],
    [{ kind: "mcp", method: "resources/read", resource: "file:///etc/passwd" }, "deny", undefined],
    // A rule naming tools says nothing about other methods.
    [{ kind: "mcp", method: "sampling/createMessage" }, "deny", undefined],
  ] as const)("%j → %s by %s", (op, action, rule) => {
    const d = judge(op as Operation);
    expect(d.action).toBe(action);
    expect(d.rule).toBe(rule);
  });
});

describe("match.mcp.serverRequests", () => {
  const { set, problems } = compilePolicies([
    policy([
      { name: "everything", action: "allow", connections: ["tools"] },
      { name: "all-methods", action: "allow", connections: ["tools"], match: { mcp: { methods: ["*"] } } },
      {
        name: "roots",
        action: "allow",
        connections: ["tools"],
        match: { mcp: { serverRequests: ["roots/*"] } },
      },
      {
        name: "no-elicitation",
        action: "deny",
        connections: ["tools"],
        match: { mcp: { serverRequests: ["elicitation/create"] } },
      },
    ]),
  ]);
  const server = (method: string): Operation => ({ kind: "mcp", method, origin: "server" });
  it("compiles", () => expect(problems).toEqual([]));
  it("admits a server request only by a rule that lists it; rules for the agent's requests never do", () => {
    expect(set.evaluate("tools", subject, server("roots/list"))).toMatchObject({
      action: "allow",
      rule: "roots",
    });
    const sampling = set.evaluate("tools", subject, server("sampling/createMessage"));
    expect([sampling.action, sampling.rule]).toEqual(["deny", undefined]);
    expect(set.evaluate("tools", subject, server("elicitation/create"))).toMatchObject({
      action: "deny",
      rule: "no-elicitation",
    });
  });
  it("a rule listing only server requests says nothing about the agent's requests", () => {
    const only = compilePolicies([
      policy([
        { name: "roots", action: "allow", connections: ["tools"], match: { mcp: { serverRequests: ["*"] } } },
      ]),
    ]).set;
    expect(only.evaluate("tools", subject, { kind: "mcp", method: "tools/list" }).action).toBe("deny");
    expect(only.evaluate("tools", subject, { kind: "mcp", method: "roots/list" }).action).toBe("deny");
  });
  it("a deny rule without match refuses server requests too", () => {
    const all = compilePolicies([
      policy([
        { name: "roots", action: "allow", connections: ["tools"], match: { mcp: { serverRequests: ["*"] } } },
        { name: "lockdown", action: "deny", connections: ["tools"] },
      ]),
    ]).set;
    expect(all.evaluate("tools", subject, server("roots/list"))).toMatchObject({
      action: "deny",
      rule: "lockdown",
    });
  });
});

describe("validation of mcp rules", () => {
  it("refuses serverRequests on a requireApproval rule, and mcp settings on other protocols", () => {
    const out = validatePolicy(
      policy(
        [
          {
            name: "r",
            action: "requireApproval",
            connections: ["tools"],
            match: { mcp: { serverRequests: ["sampling/createMessage"] } },
            approval: { approvers: { groups: ["sre"] } },
          },
        ],
        [
          {
            name: "api",
            protocol: "http",
            target: { host: "api", port: 80 },
            mcp: { pinnedTools: [{ name: "t", digest: `sha256:${"0".repeat(64)}` }] },
          },
        ],
      ),
    );
    expect(out).toEqual([
      {
        path: "spec.connections[2].mcp",
        message: "mcp is only for protocol mcp; connection api speaks http",
      },
      {
        path: "spec.rules[0].match.mcp.serverRequests",
        message:
          "match.mcp.serverRequests cannot require approval (nobody is asked on the server's behalf): allow or deny them",
      },
    ]);
  });
  it("refuses a malformed or twice-pinned digest", () => {
    const pin = (digest: string) => ({ name: "t", digest });
    const conn = (pins: unknown[]) => [
      { name: "m", protocol: "mcp", target: { host: "m", port: 80 }, mcp: { pinnedTools: pins } },
    ];
    expect(validatePolicy(policy([], conn([pin("sha256:abc")])))[0]?.path).toBe(
      "spec.connections[2].mcp.pinnedTools[0].digest",
    );
    const good = `sha256:${"a".repeat(64)}`;
    expect(validatePolicy(policy([], conn([pin(good), pin(good)])))).toEqual([
      { path: "spec.connections[2].mcp.pinnedTools", message: "tool t is pinned twice on connection m" },
    ]);
  });

  it("refuses match.mcp on a rule that does not list only mcp connections", () => {
    const out = validatePolicy(policy([{ name: "r", action: "allow", match: { mcp: { tools: ["x"] } } }]));
    expect(out.map((p) => p.message)).toContain(
      "rule r matches mcp: it must list connections, all of protocol mcp",
    );
  });
  it("refuses match.http on a rule naming an mcp connection", () => {
    const out = validatePolicy(
      policy([{ name: "r", action: "allow", connections: ["tools"], match: { http: { paths: ["/mcp"] } } }]),
    );
    expect(out[0]?.path).toBe("spec.rules[0].match.http");
    expect(out[0]?.message).toMatch(/use match.mcp/);
  });
  it("accepts credentials.http on an mcp connection", () => {
    const out = validatePolicy(
      policy(
        [],
        [
          {
            name: "gh",
            protocol: "mcp",
            target: { host: "gh.internal", port: 443 },
            credentials: { secretRef: { name: "gh" }, http: { header: "Authorization", key: "token" } },
          },
        ],
      ),
    );
    expect(out).toEqual([]);
  });
});
