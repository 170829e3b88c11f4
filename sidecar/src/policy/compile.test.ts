import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { AgentAccessPolicy } from "../../../api/src/index.ts";
import { compilePolicies } from "./compile.ts";
import type { Operation, SqlStatement, Subject } from "./types.ts";

const example = (file: string) =>
  parse(readFileSync(new URL(`../../../examples/${file}`, import.meta.url), "utf8")) as AgentAccessPolicy;

const agent: Subject = { serviceAccount: "system:serviceaccount:agents:analyst", groups: [] };
const support: Subject = { ...agent, user: "sam", groups: ["support"] };
const http = (method: string, path: string, websocket = false): Operation => ({
  kind: "http",
  method,
  path,
  websocket,
});
const stmt = (kind: SqlStatement["kind"], tables: string[] = [], functions: string[] = []): SqlStatement => ({
  kind,
  tables,
  functions,
});
const sql = (...statements: SqlStatement[]): Operation => ({ kind: "sql", statements });

describe("HTTP rules (examples/claude-agent.yaml)", () => {
  const { set, problems } = compilePolicies([example("claude-agent.yaml")]);
  it("compiles without problems", () => expect(problems).toEqual([]));
  it.each([
    ["anthropic", http("POST", "/v1/messages"), "allow", "call-model"],
    ["anthropic", http("GET", "/v1/models"), "deny", undefined],
    ["anthropic", http("DELETE", "/v1/messages"), "deny", undefined],
    ["tickets", http("GET", "/api/tickets/42"), "allow", "read-tickets"],
    ["tickets", http("POST", "/api/tickets/42/close"), "requireApproval", "close-ticket-needs-approval"],
    ["tickets", http("GET", "/api/admin/users"), "deny", "no-admin-api"],
    // Restrictive rules read the path loosely (case, `;` parameters), allow rules exactly.
    ["tickets", http("GET", "/API/ADMIN/users"), "deny", "no-admin-api"],
    ["tickets", http("GET", "/api/Admin/users"), "deny", "no-admin-api"],
    ["tickets", http("GET", "/api/admin;x=1/users"), "deny", "no-admin-api"],
    ["tickets", http("GET", "/api;jsessionid=1/admin/users"), "deny", "no-admin-api"],
    ["tickets", http("POST", "/api/TICKETS/42/close"), "requireApproval", "close-ticket-needs-approval"],
    ["tickets", http("POST", "/api/tickets/42/close;x"), "requireApproval", "close-ticket-needs-approval"],
    ["tickets", http("GET", "/API/tickets/42"), "deny", undefined],
    ["tickets", http("GET", "/api/tickets;x=1/42"), "deny", undefined],
    ["tickets", http("GET", "/api/tickets/1", true), "deny", undefined],
    ["tickets", { kind: "http-tunnel" } as Operation, "deny", "no-admin-api"],
    ["nowhere", http("GET", "/"), "deny", undefined],
  ] as const)("%s %o → %s", (conn, op, action, rule) => {
    const d = set.evaluate(conn, agent, op);
    expect(d.action).toBe(action);
    expect(d.rule).toBe(rule);
  });
  it("names the policy in every decision on a known connection", () => {
    expect(set.evaluate("anthropic", agent, http("POST", "/v1/messages")).policy).toBe("agents/claude-agent");
  });
  it("attaches the masking rules that apply to each connection", () => {
    expect(set.connections.get("anthropic")?.masking.map((m) => m.name)).toEqual([
      "pii-in-responses",
      "secrets-in-prompts",
    ]);
    expect(set.connections.get("tickets")?.masking.map((m) => m.name)).toEqual(["pii-in-responses"]);
  });
  it("maps destinations to connections by host and port", () => {
    expect(set.connectionFor("API.anthropic.com", 443)?.spec.name).toBe("anthropic");
    expect(set.connectionFor("api.anthropic.com", 80)).toBeUndefined();
  });
});

describe("tls.mode passthrough (examples/pinned-client.yaml)", () => {
  const { set, problems } = compilePolicies([example("pinned-client.yaml")]);
  const billing: Subject = { serviceAccount: "system:serviceaccount:agents:billing-agent", groups: [] };
  const tunnel: Operation = { kind: "http-tunnel" };
  it("compiles without problems", () => expect(problems).toEqual([]));
  it("opens the opaque tunnel for the CONNECT rule's subject only", () => {
    expect(set.evaluate("payments", billing, tunnel)).toMatchObject({
      action: "allow",
      rule: "open-payments",
    });
    expect(set.evaluate("payments", agent, tunnel)).toMatchObject({ action: "deny" });
  });
  it("never admits a plain request on a passthrough connection", () => {
    const d = set.evaluate("payments", billing, http("GET", "/v1/charges"));
    expect(d).toMatchObject({ action: "deny", reason: expect.stringMatching(/tls\.mode passthrough/) });
  });
  it("never relays a tunnel on an intercepted connection (its requests are judged instead)", () => {
    expect(set.evaluate("tickets", billing, tunnel)).toMatchObject({ action: "deny" });
    expect(set.evaluate("tickets", billing, http("GET", "/api/tickets/1"))).toMatchObject({
      action: "allow",
    });
  });
});

describe("SQL rules (examples/postgres-analyst.yaml)", () => {
  const { set, problems } = compilePolicies([example("postgres-analyst.yaml")]);
  it("compiles without problems", () => expect(problems).toEqual([]));
  it("requires an end-user token when the policy says so", () => {
    const d = set.evaluate("orders-db", agent, sql(stmt("select", ["orders"])));
    expect(d).toMatchObject({ action: "deny", reason: expect.stringMatching(/end-user identity token/) });
  });
  it.each([
    [sql(stmt("select", ["orders"])), "allow", "read"],
    [sql(stmt("delete", ["orders"])), "requireApproval", "delete-needs-dba"],
    [sql(stmt("drop", ["orders"])), "deny", "no-ddl"],
    [sql(stmt("insert", ["orders"])), "deny", undefined],
    [sql(stmt("select", ["orders"]), stmt("drop", ["orders"])), "deny", "no-ddl"],
    [sql(stmt("select", ["orders"]), stmt("delete", ["orders"])), "requireApproval", "delete-needs-dba"],
    [sql(stmt("begin" as never)), "deny", undefined],
  ] as const)("%o → %s", (op, action, rule) => {
    const d = set.evaluate("orders-db", support, op);
    expect(d.action).toBe(action);
    expect(d.rule).toBe(rule);
  });
  it("carries the approval settings of the rule", () => {
    expect(set.evaluate("orders-db", support, sql(stmt("update", ["orders"]))).approval).toMatchObject({
      approvers: { groups: ["dba"] },
    });
  });
  it("does not let users outside the rule's subjects reach approval", () => {
    const other = { ...support, groups: ["marketing"] };
    expect(set.evaluate("orders-db", other, sql(stmt("delete", ["orders"]))).action).toBe("deny");
  });
});

describe("quantifiers fail closed", () => {
  const policy = (rules: AgentAccessPolicy["spec"]["rules"]): AgentAccessPolicy => ({
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: "q", namespace: "ns" },
    spec: { connections: [{ name: "db", protocol: "postgres", target: { host: "db", port: 5432 } }], rules },
  });
  const { set } = compilePolicies([
    policy([
      { name: "no-secrets", action: "deny", match: { sql: { tables: ["secrets", "vault.*"] } } },
      {
        name: "reads",
        action: "allow",
        match: { sql: { statements: ["read"], tables: ["orders", "customers"] } },
      },
    ]),
  ]);
  it.each([
    [stmt("select", ["orders"]), "allow"],
    [stmt("select", ["public.orders"]), "allow"],
    [stmt("select", ["orders", "customers"]), "allow"],
    [stmt("select", ["orders", "payroll"]), "deny"],
    [stmt("select", ["orders", "secrets"]), "deny"],
    [stmt("select", ["vault.keys"]), "deny"],
    [stmt("update", ["orders"]), "deny"],
  ] as const)("%o → %s", (s, action) => {
    expect(set.evaluate("db", agent, sql(s)).action).toBe(action);
  });
});

describe("SSH rules (examples/ssh-ops.yaml)", () => {
  const { set, problems } = compilePolicies([example("ssh-ops.yaml")]);
  it("compiles without problems", () => expect(problems).toEqual([]));
  it.each([
    [{ kind: "ssh-exec", command: "uptime" }, "allow"],
    [{ kind: "ssh-exec", command: "journalctl -u nginx" }, "allow"],
    [{ kind: "ssh-exec", command: "sudo reboot" }, "requireApproval"],
    [{ kind: "ssh-exec", command: "rm -rf /" }, "deny"],
    [{ kind: "ssh-shell" }, "deny"],
    [{ kind: "ssh-forward", target: "db:5432" }, "deny"],
    [{ kind: "ssh-sftp" }, "deny"],
  ] as const)("%o → %s", (op, action) => {
    expect(set.evaluate("web-1", agent, op as Operation).action).toBe(action);
  });
});

describe("broken policies are left out whole and reported", () => {
  const good = example("claude-agent.yaml");
  it.each([
    [
      "unknown connection",
      { rules: [{ name: "r", action: "allow", connections: ["ghost"] }] },
      /unknown connection ghost/,
    ],
    [
      "approval on allow",
      { rules: [{ name: "r", action: "allow", approval: { approvers: { groups: ["x"] } } }] },
      /only allowed on rules whose action is requireApproval/,
    ],
    [
      "requireApproval without approval",
      { rules: [{ name: "r", action: "requireApproval" }] },
      /need approval/,
    ],
    [
      "bad duration",
      {
        rules: [
          {
            name: "r",
            action: "requireApproval",
            approval: { approvers: { groups: ["x"] }, timeout: "5 minutes" },
          },
        ],
      },
      /duration/,
    ],
    [
      "sql match on http",
      { rules: [{ name: "r", action: "deny", match: { sql: { statements: ["drop"] } } }] },
      /none of its connections speaks postgres/,
    ],
    [
      "CONNECT with paths",
      { rules: [{ name: "r", action: "allow", match: { http: { methods: ["CONNECT"], paths: ["/x"] } } }] },
      /CONNECT/,
    ],
    ["bad enum", { rules: [{ name: "r", action: "permit" }] }, /./],
    // Found by test/fuzz/policy-loader.fuzz.ts: connections not a list threw a TypeError.
    ["connections a map", { connections: { a: 1 } }, /Expected array/],
    ["connections holding null", { connections: [null, 3] }, /Expected object/],
  ])("%s", (_label, patch, message) => {
    const broken = {
      ...good,
      metadata: { name: "broken", namespace: "agents" },
      spec: {
        ...good.spec,
        connections: [{ name: "other", protocol: "http", target: { host: "o", port: 80 } }],
        ...patch,
      },
    } as AgentAccessPolicy;
    const { set, problems } = compilePolicies([good, broken]);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.map((p) => p.message).join("\n")).toMatch(message);
    expect(problems[0]?.policy).toBe("agents/broken");
    expect(set.policies).toEqual(["agents/claude-agent"]);
    expect(set.evaluate("other", agent, http("GET", "/")).action).toBe("deny");
  });
  // Found by test/fuzz/policy-loader.fuzz.ts: a broken and a valid document of one name left the
  // name both reported and in force.
  it("leaves out every copy of a policy defined twice", () => {
    const other = {
      ...good,
      spec: {
        ...good.spec,
        connections: [{ name: "other", protocol: "http", target: { host: "o", port: 80 } }],
      },
    } as AgentAccessPolicy;
    const broken = { ...good, spec: undefined } as unknown as AgentAccessPolicy;
    for (const twin of [other, broken]) {
      const { set, problems } = compilePolicies([good, twin]);
      expect(set.policies).toEqual([]);
      expect(problems.filter((p) => /is defined 2 times/.test(p.message)).map((p) => p.policy)).toEqual([
        "agents/claude-agent",
        "agents/claude-agent",
      ]);
      expect(set.evaluate("anthropic", agent, http("POST", "/v1/messages")).action).toBe("deny");
    }
  });
  it("refuses a second policy redefining a connection", () => {
    const twin = { ...good, metadata: { name: "twin", namespace: "agents" } };
    const { problems } = compilePolicies([good, twin]);
    expect(problems.map((p) => [p.policy, p.message])).toEqual([
      ["agents/twin", "connection anthropic is already defined by policy agents/claude-agent"],
      ["agents/twin", "connection tickets is already defined by policy agents/claude-agent"],
    ]);
  });
});

describe("connections sharing a target host:port", () => {
  const policy = (name: string, connections: unknown[]): AgentAccessPolicy =>
    ({
      apiVersion: "airlock.dev/v1alpha1",
      kind: "AgentAccessPolicy",
      metadata: { name, namespace: "agents" },
      spec: { connections, rules: [{ name: "all", action: "allow" }] },
    }) as AgentAccessPolicy;
  const http = (name: string, extra: Record<string, unknown> = {}) => ({
    name,
    protocol: "http",
    target: { host: "api.example.com", port: 443 },
    ...extra,
  });

  it("load, each behind its listener; captured traffic for the shared name is nobody's", () => {
    const { set, problems } = compilePolicies([
      policy("a", [
        http("reader", { listen: { port: 15001 } }),
        // Another name for the same host, in another case: still the same destination.
        http("writer", {
          listen: { port: 15002 },
          target: { host: "API.example.com", port: 443, aliases: ["w.example.com"] },
        }),
      ]),
      // A passthrough connection in another policy claiming it too: the last one no longer wins.
      policy("b", [http("pinned", { tls: { mode: "passthrough" } })]),
    ]);
    expect(problems).toEqual([]);
    expect(set.connections.size).toBe(3);
    expect(set.connectionFor("api.example.com", 443)).toBeUndefined();
    expect(set.connectionFor("Api.Example.Com", 443)).toBeUndefined();
    expect(set.sharedTargets).toEqual([
      { target: "api.example.com:443", connections: ["reader", "writer", "pinned"] },
    ]);
    // A name only one of them claims still maps to it.
    expect(set.connectionFor("w.example.com", 443)?.spec.name).toBe("writer");
  });
});
