// Fuzz target: the MCP guard's reading of a POST body (sidecar/src/protocols/mcp/jsonrpc.ts) against
// the reading of the official TypeScript SDK's server, which decodes the body with TextDecoder,
// JSON.parse and its JSONRPCMessageSchema, and takes tools/call's name and arguments with
// CallToolRequestSchema. Invariants, for every input:
//  - parseMcpBody never throws; a refusal carries a JSON-RPC error code and a message.
//  - Nothing the server would run escapes judgement: when the guard accepts a body, every
//    message the SDK reads as a request is one of the guard's requests, with the same id and
//    method; for a tools/call the SDK accepts, the same tool name, and the arguments the guard's
//    conditions (match.mcp.when) see are the arguments the tool gets.
//  - Conditions never throw: evaluating a few match.mcp.when expressions on those arguments
//    gives an outcome (matched, or an error that rules treat fail closed), and the policy's
//    decision on every request is one of its actions with a reason.
//  - The input read as a match.mcp.when expression compiles or is refused, never throws.
//  - Metric labels stay bounded: a request's method label is a specification method or
//    `other`, its tool label a name the policy spells out, `other` or empty.
import { isDeepStrictEqual } from "node:util";
import {
  CallToolRequestSchema,
  isJSONRPCRequest,
  JSONRPCMessageSchema,
} from "@modelcontextprotocol/sdk/types.js";
import type { AgentAccessPolicy } from "../../api/src/index.ts";
import { compilePolicies } from "../../sidecar/src/policy/compile.ts";
import { compileWhen } from "../../sidecar/src/policy/mcp-when.ts";
import type { Subject } from "../../sidecar/src/policy/types.ts";
import { parseMcpBody } from "../../sidecar/src/protocols/mcp/jsonrpc.ts";
import { mcpLabels, OTHER } from "../../sidecar/src/protocols/mcp/metric-labels.ts";
import { check, fail } from "./support/invariant.ts";

const WHENS = [
  'args.env == "prod"',
  "has(args.limit) && args.limit > 100",
  '!(args.table in ["users", "payments"])',
  'args.q.matches("^select ")',
  "args.tables.exists(t, t.startsWith(tool))",
  "size(args) > 2",
].map((w) => {
  const c = compileWhen(w);
  if ("error" in c) throw new Error(`fuzz set-up: ${w}: ${c.error}`);
  return c;
});

const SUBJECT: Subject = { serviceAccount: "system:serviceaccount:agents:agent", groups: [] };
const rule = (name: string, action: string, mcp: Record<string, unknown>, extra = {}) => ({
  name,
  action,
  connections: ["ops"],
  match: { mcp },
  ...extra,
});
const { set, problems } = compilePolicies([
  {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name: "fuzz", namespace: "agents" },
    spec: {
      connections: [{ name: "ops", protocol: "mcp", target: { host: "mcp.internal", port: 80 } }],
      rules: [
        rule("no-prod", "deny", { tools: ["*"], when: 'has(args.env) && args.env == "prod"' }),
        rule(
          "big",
          "requireApproval",
          { tools: ["run_*"], when: "args.limit > 100" },
          {
            approval: { approvers: { groups: ["sre"] } },
          },
        ),
        rule("session", "allow", { methods: ["initialize", "tools/list", "ping"] }),
        rule("tools", "allow", { tools: ["get_weather", "run_report", "query"] }),
        rule("safe", "allow", { tools: ["search_*"], when: '!(args.table in ["users"])' }),
      ],
    },
  } as unknown as AgentAccessPolicy,
]);
if (problems.length) throw new Error(`fuzz set-up: ${JSON.stringify(problems)}`);
const found = set.connections.get("ops");
if (!found) throw new Error("fuzz set-up: no connection");
const CONNECTION = found;
const NAMED = new Set(["get_weather", "run_report", "query", OTHER]);
const METHODS =
  /^(initialize|ping|tools\/(list|call)|resources\/(list|templates\/list|read|subscribe|unsubscribe)|prompts\/(list|get)|completion\/complete|logging\/setLevel|other)$/;

/** The SDK server's reading: undefined when it refuses the body before any handler. */
function sdkMessages(data: Buffer): unknown[] | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
  const list = Array.isArray(raw) ? raw : [raw];
  const out: unknown[] = [];
  for (const m of list) {
    const r = JSONRPCMessageSchema.safeParse(m);
    if (!r.success) return undefined;
    out.push(m);
  }
  return out;
}

/** The input as a condition, as a policy author could write it: compiling and evaluating never throw. */
function asCondition(data: Buffer): void {
  const source = data.toString("utf8").slice(0, 256);
  let compiled: ReturnType<typeof compileWhen>;
  try {
    compiled = compileWhen(source);
    if (!("error" in compiled)) compiled.evaluate("t", { a: 1, b: "x", c: [1, 2] });
  } catch (err) {
    fail("a condition threw while compiling or evaluating", { source, err: String(err) });
  }
}

export function fuzz(data: Buffer): void {
  asCondition(data);
  let parsed: ReturnType<typeof parseMcpBody>;
  try {
    parsed = parseMcpBody(data);
  } catch (err) {
    fail("parseMcpBody threw", { body: data.toString("utf8"), err: String(err) });
  }
  if (!parsed.ok) {
    check(typeof parsed.code === "number" && parsed.message.length > 0, "a refusal without code or message", {
      parsed,
    });
    return;
  }
  for (const r of parsed.requests) {
    const call = r.operation.method === "tools/call";
    const d = set.evaluate("ops", SUBJECT, r.operation, call ? { arguments: r.arguments } : undefined);
    check(
      ["allow", "deny", "requireApproval"].includes(d.action) && d.reason.length > 0,
      "a decision without action or reason",
      { op: r.operation, d },
    );
    const labels = mcpLabels(CONNECTION, r.operation);
    check(METHODS.test(labels.method), "an unbounded method label", { labels });
    check(call ? NAMED.has(labels.tool) : labels.tool === "", "an unbounded tool label", { labels });
    if (!call) continue;
    for (const w of WHENS) {
      let outcome: ReturnType<typeof w.evaluate>;
      try {
        outcome = w.evaluate(r.operation.tool ?? "", r.arguments);
      } catch (err) {
        fail("a condition threw", { when: w.source, args: r.arguments, err: String(err) });
      }
      check(
        outcome.ok ? typeof outcome.matched === "boolean" : outcome.error.length > 0,
        "a condition gave no usable outcome",
        { when: w.source, outcome },
      );
    }
  }
  const messages = sdkMessages(data);
  if (!messages) return;
  for (const m of messages) {
    if (!isJSONRPCRequest(m)) continue;
    const req = m as { id: string | number; method: string; params?: Record<string, unknown> };
    const mine = parsed.requests.find((r) => r.id === req.id && r.operation.method === req.method);
    check(mine !== undefined, "a request the server runs was not judged", {
      body: data.toString("utf8"),
      request: m,
      judged: parsed.requests,
    });
    if (req.method !== "tools/call" || !CallToolRequestSchema.safeParse(m).success) continue;
    check(mine.operation.tool === req.params?.name, "the tool judged is not the tool the server runs", {
      body: data.toString("utf8"),
      judged: mine.operation,
    });
    check(
      isDeepStrictEqual(mine.arguments, req.params?.arguments),
      "the arguments judged are not the arguments the tool gets",
      { body: data.toString("utf8"), judged: mine.arguments, server: req.params?.arguments },
    );
  }
}
