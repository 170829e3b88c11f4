// An unmodified Claude agent end to end: the real Claude Agent SDK (and the Claude Code binary it
// runs) as UID 1000 in an agent pod's network namespace — airlock-init's rules, no route out, the
// real sidecar — with only what the injector gives the container: the trust and proxy variables and
// the placeholder ANTHROPIC_API_KEY. https://api.anthropic.com resolves to a scripted stand-in for
// the Messages API (messages-standin.ts, TLS with a CA only the sidecar has) that drives a tool
// loop; the tools (in-process, clients/claude-agent.ts) reach a guarded PostgreSQL and HTTPS API,
// and Claude Code's own MCP client reaches an HTTP MCP server (the SDK's, mcp-upstream.ts) through
// the sidecar's MCP guard. Asserted: the model key exists only in the sidecar; a destructive
// statement is refused; a refund waits for an approver and goes through once approved; the MCP
// tool the policy denies is not even listed to the agent and never reaches the server; the model
// never sees the PII (the MCP tool's card number and email included).
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { ANTHROPIC_PLACEHOLDER_API_KEY } from "../../injector/src/names.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import { nativeAddonStatus } from "../../sidecar/src/transparent/original-dst.ts";
import { type PostgresServer, startPostgres } from "../harness/postgres.ts";
import { CUSTOMER as MCP_CUSTOMER } from "../mcp/server.ts";
import { type AgentPod, startAgentPod, type UpstreamRequest } from "./agent-pod.ts";
import { anthropicConnection, customerApiConnection } from "./connections.ts";
import type { ScriptedCall } from "./messages-standin.ts";
import { missingFeature, type Service, startService, workingBackends } from "./netns.ts";
import {
  ANTHROPIC_HOST,
  CUSTOMER,
  EXAMPLE_HOST,
  REAL_ANTHROPIC_KEY,
  REAL_API_TOKEN,
} from "./tls-fixtures.ts";

const here = import.meta.dirname;
const DB_HOST = "db.internal.test";
const MCP_HOST = "mcp.internal.test";
const MCP_PORT = 8088;

/** Why the Claude Code binary the SDK runs (its per-platform optional dependency) cannot run here. */
function claudeCodeProblem(): string | undefined {
  const pkg = `@anthropic-ai/claude-agent-sdk-${process.platform}-${process.arch}`;
  let bin: string;
  try {
    bin = join(dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`)), "claude");
  } catch {
    return `${pkg} is not installed (npm installs it with @anthropic-ai/claude-agent-sdk where the platform has one)`;
  }
  const r = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 30_000 });
  return r.status === 0 ? undefined : `${bin} --version failed: ${r.stderr || r.error?.message}`;
}

const missing = missingFeature();
const backend = missing ? undefined : workingBackends()[0];
const skipReason =
  missing ??
  (backend ? undefined : "neither iptables-nft nor iptables-legacy works here") ??
  claudeCodeProblem();
if (skipReason) console.warn(`[netns] Claude agent end-to-end test SKIPPED: ${skipReason}`);

const CALLS: ScriptedCall[] = [
  { name: "mcp__crm__get_customer", input: { id: 42 } },
  { name: "mcp__crm__query_db", input: { sql: "SELECT id, name, email FROM customers ORDER BY id" } },
  { name: "mcp__crm__query_db", input: { sql: "DROP TABLE customers" } },
  { name: "mcp__crm__refund", input: { order: "ord_1001", amount: 25 } },
  // Through the sidecar's MCP guard to the ticketing system's MCP server.
  { name: "mcp__tickets__lookup_customer", input: {} },
  { name: "mcp__tickets__delete_database", input: {} },
];
const FINAL = "Refunded ord_1001; the customer has been told.";

function policy(dbUser: string): AgentAccessPolicy {
  return {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: "support-agent", namespace: "agents" },
    spec: {
      connections: [
        anthropicConnection(),
        customerApiConnection("crm-api", "crm-token"),
        {
          name: "tickets-mcp",
          protocol: "mcp",
          target: { host: MCP_HOST, port: MCP_PORT },
          tls: { mode: "disable" },
        },
        {
          name: "orders-db",
          protocol: "postgres",
          target: { host: DB_HOST, port: 5432 },
          database: "airlock",
          tls: { mode: "disable" },
          credentials: { secretRef: { name: `orders-db-${dbUser}` } },
        },
      ],
      rules: [
        {
          name: "call-model",
          action: "allow",
          connections: ["anthropic"],
          match: { http: { methods: ["POST"], paths: ["/v1/messages", "/v1/messages/count_tokens"] } },
        },
        {
          name: "read-customers",
          action: "allow",
          connections: ["crm-api"],
          match: { http: { methods: ["GET"], paths: ["/v1/customers/*"] } },
        },
        {
          name: "refunds-need-approval",
          action: "requireApproval",
          connections: ["crm-api"],
          match: { http: { methods: ["POST"], paths: ["/v1/refunds"] } },
          approval: { approvers: { users: ["ann"] }, timeout: "60s" },
        },
        {
          name: "mcp-session",
          action: "allow",
          connections: ["tickets-mcp"],
          match: { mcp: { methods: ["initialize", "ping", "tools/list", "resources/list", "prompts/list"] } },
        },
        {
          name: "mcp-lookups",
          action: "allow",
          connections: ["tickets-mcp"],
          match: { mcp: { tools: ["lookup_customer"] } },
        },
        {
          name: "no-mcp-destruction",
          action: "deny",
          connections: ["tickets-mcp"],
          match: { mcp: { tools: ["delete_*"] } },
        },
        {
          name: "no-destructive-sql",
          action: "deny",
          connections: ["orders-db"],
          match: { sql: { statements: ["drop", "truncate", "delete", "update", "alter"] } },
        },
        {
          name: "read-orders",
          action: "allow",
          connections: ["orders-db"],
          match: { sql: { statements: ["read"] } },
        },
      ],
      masking: [
        { name: "pii", detectors: ["email", "phone"], columns: ["email"], strategy: "partial" },
        { name: "cards", connections: ["tickets-mcp"], detectors: ["creditCard"], strategy: "redact" },
      ],
    },
  };
}

interface ToolResult {
  name?: string;
  isError: boolean;
  text: string;
}

describe.skipIf(skipReason !== undefined)(`Claude Agent SDK in an agent pod (iptables-${backend})`, () => {
  let pod: AgentPod;
  let pg: PostgresServer | undefined;
  let mcp: Service | undefined;

  /** The sidecar's admin API, from inside the pod (it listens on the pod's loopback only). */
  async function admin(path: string, init?: { method: string; body: unknown }): Promise<unknown> {
    const script = `const r = await fetch(${JSON.stringify(`http://127.0.0.1:15990${path}`)}, ${JSON.stringify(
      init
        ? {
            method: init.method,
            headers: { "content-type": "application/json", authorization: `Bearer ${pod.approverToken}` },
            body: JSON.stringify(init.body),
          }
        : {},
    )}); console.log(JSON.stringify({ status: r.status, body: await r.json() }));`;
    const r = await pod.t.exec(pod.t.agent, process.execPath, ["--input-type=module", "-e", script]);
    if (r.code !== 0) throw new Error(`admin ${path}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  beforeAll(async () => {
    const addon = nativeAddonStatus();
    if (!addon.ok) throw new Error(addon.reason);
    let dbSecret: readonly [string, string, string][] = [];
    pod = await startAgentPod({
      backend: backend ?? "nft",
      hosts: (t) => ({
        [EXAMPLE_HOST]: [t.upstreamV4],
        [DB_HOST]: [t.upstreamV4],
        [MCP_HOST]: [t.upstreamV4],
        [ANTHROPIC_HOST]: [t.upstreamV4Excluded],
      }),
      script: { kind: "agent-loop", calls: CALLS, final: FINAL },
      policy: policy("login"),
      // The database's login is only known once it runs (beforeSidecar comes first).
      get secrets() {
        return [
          ["anthropic-api-key", "api-key", REAL_ANTHROPIC_KEY],
          ["crm-token", "token", REAL_API_TOKEN],
          ...dbSecret,
        ] as const;
      },
      async beforeSidecar(t) {
        mcp = startService(t.upstream, join(here, "mcp-upstream.ts"), { host: t.upstreamV4, port: MCP_PORT });
        await mcp.waitFor((l) => "ready" in l);
        pg = await startPostgres({ netns: t.upstream });
        await pg.sql(
          [
            "CREATE TABLE customers (id int PRIMARY KEY, name text, email text)",
            `INSERT INTO customers VALUES (42, '${CUSTOMER.name}', '${CUSTOMER.email}'), (43, 'Bob Example', 'bob@example.com')`,
            // The database itself would allow the DROP: only the sidecar's policy stands in the way.
            `ALTER TABLE customers OWNER TO ${pg.users.scram.user}`,
          ].join(";\n"),
        );
        dbSecret = [
          ["orders-db-login", "username", pg.users.scram.user],
          ["orders-db-login", "password", pg.users.scram.password],
        ];
      },
    });
  }, 90_000);

  afterAll(async () => {
    await pod?.close();
    await pg?.stop();
    await mcp?.stop();
  });

  // In a pod the injector sets the proxy variables too, and Claude Code honours HTTPS_PROXY (its
  // model calls come through CONNECT); without them the same calls are captured on port 443.
  it.each(["proxied", "captured"] as const)(
    "%s: runs the tool loop: key only in the sidecar, DROP refused, refund approved, PII masked",
    async (mode) => {
      const upFrom = pod.upstream.lines.length;
      const scFrom = pod.sidecar.lines.length;
      const upstreamLines = () => pod.upstream.lines.slice(upFrom);
      const requests = () =>
        upstreamLines().flatMap((l) => ("request" in l ? [l.request as UpstreamRequest] : []));
      const env = pod.envFor(mode, {
        ANTHROPIC_API_KEY: ANTHROPIC_PLACEHOLDER_API_KEY,
        // Claude Code's documented switches for traffic other than the model's.
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: "1",
        DISABLE_TELEMETRY: "1",
        DISABLE_ERROR_REPORTING: "1",
        DISABLE_AUTOUPDATER: "1",
      });
      const agent = pod.asAgent(env, pod.nodeBin, [join(here, "clients", "claude-agent.ts")]);

      // The refund is held: an approval request is pending and the payments API has seen nothing.
      let pending: { metadata: { name: string }; spec?: Record<string, unknown> } | undefined;
      for (let i = 0; i < 150 && !pending; i++) {
        const list = (await admin("/approvals?phase=Pending")) as {
          body: { items: { metadata: { name: string }; spec?: Record<string, unknown> }[] };
        };
        pending = list.body.items[0];
        if (!pending) await new Promise((r) => setTimeout(r, 200));
      }
      if (!pending)
        throw new Error(`no approval request; agent so far: ${JSON.stringify(upstreamLines().slice(-5))}`);
      expect(JSON.stringify(pending.spec)).toMatch(/refunds-need-approval/);
      expect(requests().some((r) => r.url === "/v1/refunds")).toBe(false);
      const approved = (await admin(`/approvals/${pending.metadata.name}/approve`, {
        method: "POST",
        body: { user: "ann", comment: "double charge confirmed" },
      })) as { status: number };
      expect(approved.status).toBe(200);

      const r = await agent;
      const lines = r.stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const result = lines.find((l) => "result" in l || "error" in l);
      expect(result, r.stderr + r.stdout).toMatchObject({
        result: FINAL,
        subtype: "success",
        isError: false,
      });

      // What the model saw: every tool result, as the stand-in received it.
      // (Claude Code appends a <system-reminder> block to each tool result: the tool's own text is before it.)
      const results = upstreamLines().flatMap((l) => {
        if (!("toolResult" in l)) return [];
        const t = l.toolResult as ToolResult;
        return [{ ...t, text: t.text.split("\n<system-reminder>")[0] ?? "" }];
      });
      expect(results.map((t) => t.name)).toEqual(CALLS.map((c) => c.name));
      const [customer, rows, drop, refund, lookup, destroy] = results as ToolResult[] as [
        ToolResult,
        ToolResult,
        ToolResult,
        ToolResult,
        ToolResult,
        ToolResult,
      ];
      expect(customer).toMatchObject({ isError: false, text: expect.stringMatching(/^HTTP 200\n/) });
      expect(customer.text).toContain(CUSTOMER.name);
      expect(rows.isError).toBe(false);
      const listed = JSON.parse(rows.text) as { rows: { id: number; email: string }[] };
      expect(listed.rows.map((row) => row.id)).toEqual([42, 43]);
      for (const row of listed.rows) expect(row.email).toMatch(/\*/);
      expect(drop).toMatchObject({
        isError: true,
        text: expect.stringMatching(/^ERROR 42501: .*no-destructive-sql/),
      });
      expect(refund).toMatchObject({
        isError: false,
        text: expect.stringMatching(/^HTTP 200\n.*"status":"refunded"/s),
      });
      // The MCP server's tool: allowed, its answer masked before the model saw it; the destructive
      // one never reached the server (not even listed to the agent, or refused naming the rule).
      expect(lookup.isError).toBe(false);
      expect(lookup.text).toContain("gold");
      expect(lookup.text).not.toContain(MCP_CUSTOMER.card);
      expect(lookup.text).not.toContain(MCP_CUSTOMER.email);
      expect(destroy.isError).toBe(true);
      const served = (mcp?.lines ?? []).filter((l) => "mcpCalls" in l).at(-1) as
        | { mcpCalls?: string[] }
        | undefined;
      expect(served?.mcpCalls?.filter((c) => c === "lookup_customer").length).toBeGreaterThanOrEqual(1);
      expect(served?.mcpCalls ?? []).not.toContain("delete_database");
      // PII never reached the model, in tool results or anywhere else in what it was sent.
      const toModel = requests().filter((q) => q.host === ANTHROPIC_HOST);
      for (const q of toModel) {
        expect(q.body).not.toContain(CUSTOMER.email);
        expect(q.body).not.toContain("bob@example.com");
        expect(q.body).not.toContain(MCP_CUSTOMER.card);
        expect(q.body).not.toContain(MCP_CUSTOMER.email);
      }

      // The key: every model call carried the sidecar's, none the agent's placeholder.
      expect(toModel.length).toBeGreaterThanOrEqual(CALLS.length + 1);
      for (const q of toModel) expect(q.xApiKey).toBe(REAL_ANTHROPIC_KEY);
      expect(JSON.stringify(requests())).not.toContain(ANTHROPIC_PLACEHOLDER_API_KEY);
      // The payments API got the refund once, after the approval, with the sidecar's token.
      const refunds = requests().filter((q) => q.url === "/v1/refunds");
      expect(refunds).toHaveLength(1);
      expect(refunds[0]?.authorization).toBe(`Bearer ${REAL_API_TOKEN}`);
      expect(await pg?.sql("SELECT count(*) FROM customers")).toBe("2");

      // The audit trail names each decision.
      const audits = pod.sidecar.lines
        .slice(scFrom)
        .flatMap((l) => ("audit" in l ? [l.audit as AuditEvent] : []));
      const capturedModelCalls = pod.sidecar.lines
        .slice(scFrom)
        .filter((l) => l.msg === "captured connection mapped" && l.connection === "anthropic").length;
      if (mode === "captured") expect(capturedModelCalls).toBeGreaterThan(0);
      expect(audits.find((e) => e.connection === "orders-db" && e.decision.action === "deny")).toMatchObject({
        decision: { rule: "no-destructive-sql" },
      });
      expect(audits.find((e) => (e.operation as { path?: string }).path === "/v1/refunds")).toMatchObject({
        connection: "crm-api",
        decision: { action: "requireApproval", rule: "refunds-need-approval" },
        approval: { approvers: ["ann"] },
        upstream: { status: 200 },
      });
      // The MCP tool call: one event, allowed by its rule, with what was masked in its answer.
      const mcpCall = audits.find(
        (e) => e.connection === "tickets-mcp" && (e.operation as { method?: string }).method === "tools/call",
      );
      expect(mcpCall, JSON.stringify(audits.filter((e) => e.connection === "tickets-mcp"))).toMatchObject({
        decision: { action: "allow", rule: "mcp-lookups" },
      });
      expect(Object.keys(mcpCall?.masked ?? {}).length).toBeGreaterThan(0);
      const modelCalls = audits.filter(
        (e) => e.connection === "anthropic" && (e.operation as { path?: string }).path === "/v1/messages",
      );
      expect(modelCalls.length).toBe(toModel.length);
      for (const e of modelCalls) expect(e.decision).toMatchObject({ action: "allow", rule: "call-model" });
      // Whatever else Claude Code tried (its settings endpoints on api.anthropic.com) no rule allows:
      // refused by the sidecar, never forwarded; the upstream saw only the loop's own requests.
      const refused = audits.filter((e) => e.decision.action === "deny" && e.connection !== "orders-db");
      for (const e of refused) expect(e.upstream?.status).toBeUndefined();
      expect(new Set(requests().map((q) => `${q.method} ${q.url.replace(/\?.*$/, "")}`))).toEqual(
        new Set(["POST /v1/messages", "GET /v1/customers/42", "POST /v1/refunds"]),
      );
      console.log(
        `[claude-agent ${mode}] delete_database answered: ${JSON.stringify(destroy.text.slice(0, 160))}; ${toModel.length} model calls (${capturedModelCalls} captured connections), ${audits.length} audit events; refused besides the DROP: ${JSON.stringify(
          refused.map((e) => ({
            connection: e.connection,
            operation: e.operation,
            reason: e.decision.reason,
          })),
        )}`,
      );
      const text = JSON.stringify(pod.sidecar.lines);
      for (const v of [REAL_ANTHROPIC_KEY, REAL_API_TOKEN, CUSTOMER.email]) expect(text).not.toContain(v);
    },
    60_000,
  );
});

if (skipReason)
  describe("Claude Agent SDK in an agent pod", () => {
    it.skip(`skipped: ${skipReason}`, () => {});
  });
