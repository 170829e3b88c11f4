// Compiles AgentAccessPolicy objects into an immutable PolicySet. A policy with any problem is
// left out whole and reported: its connections then do not exist, so traffic to them is denied
// (fail closed) rather than judged by half a policy.
import type { AgentAccessPolicy, MaskingRule } from "../../../api/src/index.ts";
import { describeMatch } from "./describe-match.ts";
import { isPassthrough } from "./passthrough.ts";
import { compileRuleMatch, type OperationMatcher } from "./rule-match.ts";
import { compileSubjects, type SubjectMatcher } from "./subjects.ts";
import type {
  Action,
  Connection,
  Decision,
  Operation,
  PolicyProblem,
  Rule,
  SqlKind,
  Subject,
  ToolCallInput,
} from "./types.ts";
import { validatePolicy } from "./validate.ts";

interface CompiledRule {
  rule: Rule;
  subjects: SubjectMatcher;
  matches: OperationMatcher;
  /** For a requireApproval rule with a grant: what the grant covers, shown to approvers. */
  grantCovers?: string;
  /** Its decision without condition failures, for [other operations, http-tunnel] (made on first use). */
  decided?: [Decision | undefined, Decision | undefined];
}

export interface CompiledConnection {
  /** `namespace/name` of the owning policy. */
  policy: string;
  spec: Connection;
  requireUserToken: boolean;
  oidc: NonNullable<AgentAccessPolicy["spec"]["identity"]>["oidc"];
  rules: Record<Action, CompiledRule[]>;
  /** Masking rules of the owning policy that apply to this connection (both directions). */
  masking: readonly MaskingRule[];
  /** Its default deny without condition failures (made on first use, then shared). */
  defaultDeny?: Decision;
}

export interface PolicySet {
  readonly connections: ReadonlyMap<string, CompiledConnection>;
  readonly policies: readonly string[];
  /** `input`: a tools/call's arguments, for match.mcp.when (see ToolCallInput). */
  evaluate(connection: string, subject: Subject, op: Operation, input?: ToolCallInput): Decision;
  /**
   * The connection a destination maps to, by target host/aliases and port; undefined for one
   * that several connections claim (captured traffic to it cannot be attributed: refused).
   */
  connectionFor(host: string, port: number): CompiledConnection | undefined;
  /** `host:port` names claimed by more than one connection (reachable only by their listeners). */
  readonly sharedTargets: readonly { target: string; connections: readonly string[] }[];
  /**
   * Whether the allow rule `rule` of `connection` names SQL statement kind `kind` itself (not
   * through `*`, `read`, `write` or a rule without statement kinds).
   */
  ruleNamesSqlKind(connection: string, rule: string, kind: SqlKind): boolean;
  /**
   * The SQL statement kinds that the allow and requireApproval rules applying to `subject` on
   * `connection` could admit, as the rules write them (`read`/`write` shorthands included), or
   * "any" when one of them names none (or `*`). Rules that match only HTTP or SSH do not count.
   */
  admittedSqlKinds(connection: string, subject: Subject): ReadonlySet<string> | "any";
  /**
   * Whether any allow or requireApproval rule applying to `subject` on `connection` could admit an
   * HTTP request (rules that match only SQL or SSH do not count).
   */
  mayAdmitHttp(connection: string, subject: Subject): boolean;
}

const namedTools = new WeakMap<CompiledConnection, ReadonlySet<string>>();

/**
 * The MCP tool names `connection`'s rules spell out literally (a glob such as `get_*` names no
 * tool), and the tools it pins: the names a metric label may carry.
 */
export function namedMcpTools(connection: CompiledConnection): ReadonlySet<string> {
  const hit = namedTools.get(connection);
  if (hit) return hit;
  const names = new Set<string>();
  for (const rules of Object.values(connection.rules))
    for (const r of rules) for (const t of r.rule.match?.mcp?.tools ?? []) if (!t.includes("*")) names.add(t);
  for (const t of connection.spec.mcp?.pinnedTools ?? []) names.add(t.name);
  namedTools.set(connection, names);
  return names;
}

export const policyKey = (p: AgentAccessPolicy) => `${p.metadata.namespace ?? "default"}/${p.metadata.name}`;

const ORDER: readonly Action[] = ["deny", "requireApproval", "allow"];

function compileConnectionRules(
  policy: AgentAccessPolicy,
  connection: string,
): Record<Action, CompiledRule[]> {
  const out: Record<Action, CompiledRule[]> = { deny: [], requireApproval: [], allow: [] };
  for (const rule of policy.spec.rules) {
    if (rule.connections?.length && !rule.connections.includes(connection)) continue;
    out[rule.action].push({
      rule,
      subjects: compileSubjects(rule.subjects, policy.metadata.namespace ?? "default"),
      matches: compileRuleMatch(rule),
      ...(rule.action === "requireApproval" && rule.approval?.grantTtl
        ? { grantCovers: describeMatch(rule.match) }
        : {}),
    });
  }
  return out;
}

/** Conditions (match.mcp.when) that could not be evaluated, for the reason. */
function conditionFailures(input: ToolCallInput | undefined, rule?: string): string {
  if (typeof input !== "object" || !input.failures?.length) return "";
  const failed = input.failures.filter((f) => rule === undefined || f.rule === rule);
  if (failed.length === 0) return "";
  const said = failed.map((f) => `rule ${f.rule}'s when could not be evaluated (${f.error})`).join("; ");
  return rule === undefined
    ? `; ${said}`
    : ` (fail closed: its when could not be evaluated: ${failed[0]?.error})`;
}

function decideOne(
  conn: CompiledConnection,
  subject: Subject,
  op: Operation,
  input?: ToolCallInput,
): Decision {
  const tunnel = op.kind === "http-tunnel" ? 1 : 0;
  for (const action of ORDER) {
    for (const r of conn.rules[action]) {
      if (!r.subjects(subject) || !r.matches(op, input)) continue;
      const failures = conditionFailures(input, r.rule.name);
      // Without condition failures the decision depends on the rule and the operation's kind
      // alone: built once, frozen, and shared (the audit line serializes it once too).
      if (failures === "") {
        r.decided ??= [undefined, undefined];
        let shared = r.decided[tunnel];
        if (shared === undefined) {
          shared = Object.freeze(ruleDecision(conn, r, action, op, ""));
          r.decided[tunnel] = shared;
        }
        return shared;
      }
      return ruleDecision(conn, r, action, op, failures);
    }
  }
  const failures = conditionFailures(input);
  if (failures !== "") return defaultDeny(conn, failures);
  conn.defaultDeny ??= Object.freeze(defaultDeny(conn, ""));
  return conn.defaultDeny;
}

function ruleDecision(
  conn: CompiledConnection,
  r: CompiledRule,
  action: Action,
  op: Operation,
  failures: string,
): Decision {
  const decision: Decision = {
    action,
    policy: conn.policy,
    rule: r.rule.name,
    reason: `${reasonFor(action, r.rule.name, op)}${failures}`,
  };
  if (action === "requireApproval" && op.kind === "http-tunnel") {
    return {
      ...decision,
      action: "deny",
      reason: `rule ${r.rule.name} requires per-request approval, which an opaque CONNECT tunnel cannot offer`,
    };
  }
  if (r.rule.approval) decision.approval = r.rule.approval;
  if (r.grantCovers !== undefined) decision.grantCovers = r.grantCovers;
  return decision;
}

function defaultDeny(conn: CompiledConnection, failures: string): Decision {
  return {
    action: "deny",
    policy: conn.policy,
    reason: `no rule allows this operation (default deny)${failures}`,
  };
}

function reasonFor(action: Action, rule: string, op: Operation): string {
  const verb = action === "allow" ? "allowed" : action === "deny" ? "denied" : "needs approval";
  const tunnel = op.kind === "http-tunnel" ? " (host-level: the tunnel's requests are not inspected)" : "";
  return `${verb} by rule ${rule}${tunnel}`;
}

/** SQL strings may carry several statements: each is judged alone and the strictest outcome wins. */
function decide(conn: CompiledConnection, subject: Subject, op: Operation, input?: ToolCallInput): Decision {
  // Which kind of traffic a connection carries is its TLS mode's, not a rule's: a passthrough
  // connection relays only the agent's own TLS, never a plain request; on any other the agent's
  // TLS is intercepted and read request by request, so no rule opens a raw tunnel there.
  const passthrough = isPassthrough(conn.spec);
  if (op.kind !== "http-tunnel" && passthrough)
    return {
      action: "deny",
      policy: conn.policy,
      reason: `connection ${conn.spec.name} has tls.mode passthrough: it relays only the agent's own TLS (a CONNECT or captured TLS), never a plain request`,
    };
  if (op.kind === "http-tunnel" && !passthrough) {
    const d = decideRules(conn, subject, op, input);
    if (d.action === "deny") return d;
    return {
      action: "deny",
      policy: conn.policy,
      reason: `connection ${conn.spec.name} does not have tls.mode passthrough: the agent's TLS is intercepted and judged per request, never relayed opaque`,
    };
  }
  return decideRules(conn, subject, op, input);
}

function decideRules(
  conn: CompiledConnection,
  subject: Subject,
  op: Operation,
  input?: ToolCallInput,
): Decision {
  if (conn.requireUserToken && subject.user === undefined) {
    return {
      action: "deny",
      policy: conn.policy,
      reason: "this connection requires an end-user identity token",
    };
  }
  if (op.kind !== "sql" || op.statements.length <= 1) {
    if (op.kind === "sql" && op.statements.length === 0)
      return { action: "allow", policy: conn.policy, reason: "empty query" };
    return decideOne(conn, subject, op, input);
  }
  let pending: Decision | undefined;
  let allowed: Decision | undefined;
  for (const statement of op.statements) {
    const d = decideOne(conn, subject, { kind: "sql", statements: [statement] });
    if (d.action === "deny") return d;
    if (d.action === "requireApproval") pending ??= d;
    else allowed ??= d;
  }
  return (pending ?? allowed) as Decision;
}

export function compilePolicies(policies: readonly AgentAccessPolicy[]): {
  set: PolicySet;
  problems: PolicyProblem[];
} {
  const problems: PolicyProblem[] = [];
  const connections = new Map<string, CompiledConnection>();
  const accepted: string[] = [];
  // Stable order, so that a conflict is always resolved the same way on every sidecar: by code
  // unit, not localeCompare, whose order follows the process's locale (and loads ICU's collator).
  const sorted = [...policies].sort((a, b) => {
    const [x, y] = [policyKey(a), policyKey(b)];
    return x < y ? -1 : x > y ? 1 : 0;
  });
  const copies = new Map<string, number>();
  for (const policy of sorted) copies.set(policyKey(policy), (copies.get(policyKey(policy)) ?? 0) + 1);
  for (const policy of sorted) {
    const key = policyKey(policy);
    const own = validatePolicy(policy).map((p) => ({ ...p, policy: key }));
    // Two documents claiming one name (files; the API server keeps names unique): which one the
    // author means is unknowable, so none loads.
    const n = copies.get(key) ?? 0;
    if (n > 1)
      own.push({
        policy: key,
        path: "metadata.name",
        message: `policy ${key} is defined ${n} times; give each policy its own name`,
      });
    // The spec may not match the schema (validatePolicy said so): read it without trusting it.
    const declared: unknown = policy.spec?.connections;
    for (const c of Array.isArray(declared) ? (declared as CompiledConnection["spec"][]) : []) {
      if (typeof c !== "object" || c === null) continue;
      const holder = connections.get(c.name);
      if (holder)
        own.push({
          policy: key,
          path: "spec.connections",
          message: `connection ${c.name} is already defined by policy ${holder.policy}`,
        });
      const port = c.listen?.port;
      const clash = port && [...connections.values()].find((o) => o.spec.listen?.port === port);
      if (clash && !holder)
        own.push({
          policy: key,
          path: "spec.connections",
          message: `connection ${c.name} listens on port ${port}, as connection ${clash.spec.name} of policy ${clash.policy} does`,
        });
    }
    if (own.length) {
      problems.push(...own);
      continue;
    }
    accepted.push(key);
    for (const c of policy.spec.connections) {
      connections.set(c.name, {
        policy: key,
        spec: c,
        requireUserToken: policy.spec.identity?.requireUserToken ?? false,
        oidc: policy.spec.identity?.oidc,
        rules: compileConnectionRules(policy, c.name),
        masking: (policy.spec.masking ?? []).filter(
          (m) => !m.connections?.length || m.connections.includes(c.name),
        ),
      });
    }
  }

  // Two connections may share a target (one upstream, two credentials or rule sets, each behind
  // its own listener); traffic captured for that name is then nobody's, never the last one's.
  const byTarget = new Map<string, CompiledConnection[]>();
  for (const conn of connections.values()) {
    const hosts = new Set(
      [conn.spec.target.host, ...(conn.spec.target.aliases ?? [])].map((h) => h.toLowerCase()),
    );
    for (const host of hosts) {
      const key = `${host}:${conn.spec.target.port}`;
      byTarget.set(key, [...(byTarget.get(key) ?? []), conn]);
    }
  }
  const sharedTargets = [...byTarget]
    .filter(([, claimants]) => claimants.length > 1)
    .map(([target, claimants]) => ({ target, connections: claimants.map((c) => c.spec.name) }));

  const set: PolicySet = {
    connections,
    policies: accepted,
    evaluate(name, subject, op, input) {
      const conn = connections.get(name);
      if (!conn) return { action: "deny", reason: `unknown connection ${name} (no valid policy defines it)` };
      return decide(conn, subject, op, input);
    },
    connectionFor(host, port) {
      const claimants = byTarget.get(`${host.toLowerCase()}:${port}`);
      return claimants?.length === 1 ? claimants[0] : undefined;
    },
    sharedTargets,
    ruleNamesSqlKind(name, rule, kind) {
      const r = connections.get(name)?.rules.allow.find((c) => c.rule.name === rule)?.rule;
      return r?.match?.sql?.statements?.includes(kind) ?? false;
    },
    admittedSqlKinds(name, subject) {
      const conn = connections.get(name);
      const out = new Set<string>();
      if (!conn) return out;
      for (const action of ["allow", "requireApproval"] as const) {
        for (const r of conn.rules[action]) {
          if (!r.subjects(subject)) continue;
          const match = r.rule.match;
          if (match && !match.sql && (match.http || match.ssh)) continue;
          const kinds = match?.sql?.statements;
          if (!kinds || kinds.length === 0 || kinds.includes("*")) return "any";
          for (const k of kinds) out.add(k);
        }
      }
      return out;
    },
    mayAdmitHttp(name, subject) {
      const conn = connections.get(name);
      if (!conn) return false;
      for (const action of ["allow", "requireApproval"] as const)
        for (const r of conn.rules[action]) {
          if (!r.subjects(subject)) continue;
          const match = r.rule.match;
          if (match && !match.http && (match.sql || match.ssh)) continue;
          return true;
        }
      return false;
    },
  };
  return { set, problems };
}
