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

describe("validation of mcp rules", () => {
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
