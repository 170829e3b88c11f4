import { describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import { compilePolicies } from "./compile.ts";
import { compileWhen } from "./mcp-when.ts";
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

describe("match.mcp.when (CEL over tools/call arguments)", () => {
  const rules = [
    {
      name: "no-prod-writes",
      action: "deny",
      connections: ["tools"],
      match: { mcp: { tools: ["write_*"], when: 'args.env == "prod"' } },
    },
    {
      name: "big-reports",
      action: "requireApproval",
      connections: ["tools"],
      match: { mcp: { tools: ["run_report"], when: "args.limit > 100" } },
      approval: { approvers: { groups: ["sre"] } },
    },
    {
      name: "writes",
      action: "allow",
      connections: ["tools"],
      match: { mcp: { tools: ["write_*", "run_report"] } },
    },
    {
      name: "safe-tables",
      action: "allow",
      connections: ["tools"],
      match: { mcp: { tools: ["query"], when: '!(args.table in ["users", "payments"])' } },
    },
  ];
  const { set, problems } = compilePolicies([policy(rules)]);
  const call = (tool: string, args: unknown) =>
    set.evaluate("tools", subject, { kind: "mcp", method: "tools/call", tool }, { arguments: args });
  const listed = (tool: string) =>
    set.evaluate("tools", subject, { kind: "mcp", method: "tools/call", tool }, "any-arguments").action;

  it("compiles", () => expect(problems).toEqual([]));

  it.each([
    ["write_file", { env: "prod" }, "deny", "no-prod-writes"],
    ["write_file", { env: "dev" }, "allow", "writes"],
    ["run_report", { limit: 500 }, "requireApproval", "big-reports"],
    ["run_report", { limit: 100 }, "allow", "writes"],
    ["query", { table: "orders" }, "allow", "safe-tables"],
    ["query", { table: "payments" }, "deny", undefined],
  ])("%s %j → %s", (tool, args, action, rule) => {
    const d = call(tool, args);
    expect([d.action, d.rule]).toEqual([action, rule]);
  });

  it("fails closed: an error makes a deny rule match and an allow rule not, saying why", () => {
    // args.env is missing: the deny rule applies.
    const missing = call("write_file", {});
    expect(missing).toMatchObject({ action: "deny", rule: "no-prod-writes" });
    expect(missing.reason).toMatch(/fail closed: its when could not be evaluated: No such key: env/);
    // A string compared with a number: the approval rule applies.
    expect(call("run_report", { limit: "lots" })).toMatchObject({ action: "requireApproval" });
    // The allow rule cannot tell: default deny, naming the condition.
    const d = call("query", {});
    expect([d.action, d.rule]).toEqual(["deny", undefined]);
    expect(d.reason).toMatch(/default deny\); rule safe-tables's when could not be evaluated/);
    // Arguments that are not an object, or no input at all.
    expect(call("query", ["orders"]).action).toBe("deny");
    expect(call("write_file", "prod").rule).toBe("no-prod-writes");
    expect(set.evaluate("tools", subject, { kind: "mcp", method: "tools/call", tool: "query" }).action).toBe(
      "deny",
    );
    // Absent arguments are {}.
    expect(call("query", undefined).action).toBe("deny");
  });

  it("error reasons do not repeat quoted argument text", () => {
    const { set: s2 } = compilePolicies([
      policy([
        {
          name: "r",
          action: "deny",
          connections: ["tools"],
          match: { mcp: { tools: ["t"], when: 'args[args.n] == 1 || args.n.startsWith("x")' } },
        },
      ]),
    ]);
    const out = s2.evaluate(
      "tools",
      subject,
      { kind: "mcp", method: "tools/call", tool: "t" },
      { arguments: { n: "secret-abc" } },
    );
    expect(out.action).toBe("deny");
    expect(out.reason).toMatch(/No such key \(a key taken from the arguments\)/);
    expect(out.reason).not.toContain("secret-abc");
    const indexed = s2.evaluate(
      "tools",
      subject,
      { kind: "mcp", method: "tools/call", tool: "t" },
      { arguments: { n: 41111111 } },
    );
    expect(indexed.action).toBe("deny");
    expect(indexed.reason).not.toContain("41111111");
  });

  it("listing: conditional deny/approval rules do not hide a tool; a conditional allow shows it", () => {
    expect(listed("write_file")).toBe("allow");
    expect(listed("run_report")).toBe("allow");
    expect(listed("query")).toBe("allow");
    expect(listed("delete_all")).toBe("deny");
    // The strictest some call may meet: what the list note is drawn from.
    const strictest = (tool: string) =>
      set.evaluate("tools", subject, { kind: "mcp", method: "tools/call", tool }, "some-arguments").action;
    expect(strictest("run_report")).toBe("requireApproval");
    expect(strictest("write_file")).toBe("deny");
    expect(strictest("query")).toBe("allow");
  });

  it.each([
    ['args.env = "x"', /not a CEL expression/],
    ['arg.env == "x"', /Unknown variable: arg .*variables: args \(the tools\/call arguments/],
    ['"a" + 1', /no such overload|overload/i],
    ["args.limit + 1", /must be a bool/],
    ["size(args)", /type int; it must be a bool/],
    ["args.q.matches(args.p)", /matches\(\) takes a string literal pattern/],
    ['args.q.matches("(")', /not a valid regular expression/],
  ])("refuses %s at load, with its path", (when, message) => {
    const out = validatePolicy(
      policy([
        { name: "r", action: "allow", connections: ["tools"], match: { mcp: { tools: ["t"], when } } },
      ]),
    );
    expect(out).toEqual([{ path: "spec.rules[0].match.mcp.when", message: expect.stringMatching(message) }]);
  });

  it("refuses matches() patterns that could backtrack on the agent's input; accepts ordinary ones", () => {
    const accepted = (p: string) => !("error" in compileWhen(`args.q.matches(${JSON.stringify(p)})`));
    for (const p of ["^select ", "^[a-z]+@example\\.com$", "(foo|bar)+", "^(ab)+$", "(?:x)*y", "\\(a+\\)+"])
      expect([p, accepted(p)]).toEqual([p, true]);
    for (const p of ["(a+)+$", "(\\w*x)*", "((a+)b)+", "(a|b+)*", "(x)\\1", "(?<n>a)\\k<n>", "(a{2,})+"])
      expect([p, accepted(p)]).toEqual([p, false]);
    const out = compileWhen('args.q.matches("(a+)+$")');
    expect("error" in out && out.error).toMatch(
      /nests quantifiers: on arguments the agent chooses it could backtrack/,
    );
  });

  it("refuses when without tools", () => {
    const out = validatePolicy(
      policy([{ name: "r", action: "allow", connections: ["tools"], match: { mcp: { when: "true" } } }]),
    );
    expect(out.map((p) => p.path)).toContain("spec.rules[0].match.mcp.when");
  });
});
