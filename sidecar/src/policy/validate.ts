// Everything the API server would reject (schema + CEL), re-checked for policies that never pass
// through one (standalone files, `airlock policy test`), plus checks CEL cannot express well.
import {
  type AgentAccessPolicy,
  AgentAccessPolicySpec,
  type Connection,
  type Protocol,
} from "../../../api/src/index.ts";
import { didYouMean } from "../../../api/src/suggest.ts";
import { checkSchema } from "../../../api/src/validate.ts";
import { parseJsonPath } from "../masking/json-path.ts";
import { compileWhen } from "./mcp-when.ts";
import { passthroughProblems } from "./passthrough.ts";
import type { PolicyProblem } from "./types.ts";

type Problem = Omit<PolicyProblem, "policy">;

const DURATION = /^([0-9]+([.][0-9]+)?(ms|s|m|h))+$/;

/** The sidecar's own ports (app.ts PORTS): a connection listening there could never start. */
const SIDECAR_PORTS: ReadonlyMap<number, string> = new Map([
  [15900, "the transparent capture port"],
  [15901, "the explicit proxy port"],
  [15990, "the admin port"],
]);

const TOP_LEVEL = ["apiVersion", "kind", "metadata", "spec", "status"];

// Connection fields that mean something for one protocol only (the CRD's CEL rules say the same):
// on another protocol they would be silently ignored, so the restriction they express would not hold.
const PROTOCOL_ONLY: readonly [
  field: string,
  read: (c: Connection) => unknown,
  protocol: Protocol,
  alsoFor?: Protocol,
][] = [
  ["credentials.http", (c) => c.credentials?.http, "http", "mcp"],
  ["credentials.postgres", (c) => c.credentials?.postgres, "postgres"],
  ["credentials.ssh", (c) => c.credentials?.ssh, "ssh"],
  ["database", (c) => c.database, "postgres"],
  ["agentTls", (c) => c.agentTls, "postgres"],
  ["knownHosts", (c) => c.knownHosts, "ssh"],
  ["userHeader", (c) => c.userHeader, "http"],
  ["errorFormat", (c) => c.errorFormat, "http"],
  ["mcp", (c) => c.mcp, "mcp"],
];

function duplicates(names: readonly string[]): string[] {
  const seen = new Set<string>();
  const dup: string[] = [];
  for (const n of names) {
    if (seen.has(n)) dup.push(n);
    seen.add(n);
  }
  return dup;
}

const LOOPBACK_HTTP = /^http:\/\/(127[.]0[.]0[.]1|localhost|\[::1\])(:[0-9]+)?$/;

/** The CRD's CEL rules on credentials: a source is named, and a Vault setup is complete. */
function credentialProblems(c: Connection, at: string): Problem[] {
  const creds = c.credentials;
  if (!creds) return [];
  const out: Problem[] = [];
  if (!creds.secretRef && !creds.vault)
    out.push({ path: at, message: `connection ${c.name}: credentials need secretRef or vault` });
  const vault = creds.vault;
  const cert = creds.ssh?.certificate;
  if (
    vault &&
    c.protocol === "ssh" &&
    (!/\/sign\/[^/]+$/.test(vault.path) || !cert || cert.caKey !== undefined)
  )
    out.push({
      path: `${at}.vault`,
      message: `connection ${c.name}: for protocol ssh, credentials.vault signs the session certificates: its path is the SSH secrets engine's <mount>/sign/<role>, with credentials.ssh.certificate and no caKey`,
    });
  if (cert && !vault && cert.caKey === undefined)
    out.push({
      path: `${at}.ssh.certificate.caKey`,
      message: `connection ${c.name}: credentials.ssh.certificate needs caKey, or credentials.vault to sign with`,
    });
  if (vault?.fallback === "secretRef" && c.protocol === "ssh")
    out.push({
      path: `${at}.vault.fallback`,
      message: "fallback secretRef is not for protocol ssh (allowed values there: none)",
    });
  if (vault && /(^|\/)\.{1,2}(\/|$)/.test(vault.path))
    out.push({ path: `${at}.vault.path`, message: `${vault.path}: path segments may not be . or ..` });
  if (vault && c.protocol === "postgres" && !/\/creds\/[^/]+$/.test(vault.path))
    out.push({
      path: `${at}.vault.path`,
      message: `${vault.path}: for protocol postgres the path is the database secrets engine's <mount>/creds/<role>`,
    });
  const approved = vault?.approvedPath;
  if (approved !== undefined && c.protocol !== "postgres")
    out.push({
      path: `${at}.vault.approvedPath`,
      message: `credentials.vault.approvedPath is only for protocol postgres; connection ${c.name} speaks ${c.protocol}`,
    });
  else if (
    approved !== undefined &&
    (/(^|\/)\.{1,2}(\/|$)/.test(approved) || !/\/creds\/[^/]+$/.test(approved))
  )
    out.push({
      path: `${at}.vault.approvedPath`,
      message: `${approved}: approvedPath is the database secrets engine's <mount>/creds/<role> (no . or .. segments)`,
    });
  if (vault?.refreshSeconds !== undefined && c.protocol !== "http" && c.protocol !== "mcp")
    out.push({
      path: `${at}.vault.refreshSeconds`,
      message:
        "refreshSeconds is only for protocols http and mcp (a PostgreSQL lease lasts the agent session)",
    });
  if (vault) {
    if (!vault.address.startsWith("https://") && !LOOPBACK_HTTP.test(vault.address))
      out.push({
        path: `${at}.vault.address`,
        message: `${vault.address}: address must be https:// (http:// only for 127.0.0.1, localhost or [::1])`,
      });
    if (vault.fallback === "secretRef" && !creds.secretRef)
      out.push({
        path: `${at}.vault.fallback`,
        message: "fallback secretRef needs credentials.secretRef (allowed values: none, secretRef)",
      });
  }
  return out;
}

export function validatePolicy(policy: AgentAccessPolicy): Problem[] {
  const top = Object.keys(policy ?? {}).filter((k) => !TOP_LEVEL.includes(k));
  if (top.length)
    return top.map((k) => ({
      path: k,
      message: `unknown field "${k}"${didYouMean(k, TOP_LEVEL)} (fields here: ${TOP_LEVEL.join(", ")})`,
    }));
  if (!policy?.metadata?.name) return [{ path: "metadata.name", message: "policy has no metadata.name" }];
  if (!policy.spec) return [{ path: "spec", message: "policy has no spec" }];
  const schema = checkSchema(AgentAccessPolicySpec, policy.spec);
  if (schema.length) return schema.slice(0, 20).map((p) => ({ path: `spec${p.path}`, message: p.message }));

  const out: Problem[] = [];
  const spec = policy.spec;
  const connections = new Map(spec.connections.map((c) => [c.name, c]));
  spec.connections.forEach((c, i) => {
    for (const [field, read, protocol, alsoFor] of PROTOCOL_ONLY)
      if (read(c) !== undefined && c.protocol !== protocol && c.protocol !== alsoFor)
        out.push({
          path: `spec.connections[${i}].${field}`,
          message: `${field} is only for protocol ${protocol}${alsoFor ? ` and ${alsoFor}` : ""}; connection ${c.name} speaks ${c.protocol}`,
        });
  });
  spec.connections.forEach((c, i) => {
    out.push(...credentialProblems(c, `spec.connections[${i}].credentials`));
    for (const d of duplicates((c.mcp?.pinnedTools ?? []).map((t) => t.name)))
      out.push({
        path: `spec.connections[${i}].mcp.pinnedTools`,
        message: `tool ${d} is pinned twice on connection ${c.name}`,
      });
  });
  for (const d of duplicates(spec.connections.map((c) => c.name)))
    out.push({ path: "spec.connections", message: `duplicate connection name ${d}` });
  for (const d of duplicates(spec.rules.map((r) => r.name)))
    out.push({ path: "spec.rules", message: `duplicate rule name ${d}` });
  for (const d of duplicates((spec.masking ?? []).map((m) => m.name)))
    out.push({ path: "spec.masking", message: `duplicate masking rule name ${d}` });

  spec.rules.forEach((rule, i) => {
    const at = `spec.rules[${i}]`;
    const named = rule.connections?.length ? rule.connections : [...connections.keys()];
    for (const n of rule.connections ?? [])
      if (!connections.has(n))
        out.push({ path: `${at}.connections`, message: `rule ${rule.name} names unknown connection ${n}` });
    if (rule.approval && rule.action !== "requireApproval")
      out.push({
        path: `${at}.approval`,
        message: "approval is only allowed on rules whose action is requireApproval",
      });
    if (rule.action === "requireApproval" && !rule.approval)
      out.push({ path: `${at}.action`, message: "requireApproval rules need approval.approvers" });
    const when = rule.match?.mcp?.when;
    if (when !== undefined) {
      if (!rule.match?.mcp?.tools?.length)
        out.push({
          path: `${at}.match.mcp.when`,
          message: "match.mcp.when applies to tools/call requests: it needs tools",
        });
      const compiled = compileWhen(when);
      if ("error" in compiled)
        out.push({ path: `${at}.match.mcp.when`, message: `rule ${rule.name}: ${compiled.error}` });
    }
    if (rule.action === "requireApproval" && rule.match?.mcp?.serverRequests)
      out.push({
        path: `${at}.match.mcp.serverRequests`,
        message:
          "match.mcp.serverRequests cannot require approval (nobody is asked on the server's behalf): allow or deny them",
      });
    for (const [field, value] of [
      ["grantTtl", rule.approval?.grantTtl],
      ["timeout", rule.approval?.timeout],
    ] as const) {
      if (value !== undefined && !DURATION.test(value))
        out.push({
          path: `${at}.approval.${field}`,
          message: `${value} is not a duration such as 30s, 5m or 1h30m`,
        });
    }
    // A match for a protocol none of the rule's connections speak can never apply: almost
    // certainly a mistake that would leave the intended restriction unenforced.
    const protocols = new Set(named.map((n) => connections.get(n)?.protocol));
    const m = rule.match;
    const wrong = (["http", "sql", "ssh", "mcp"] as const).filter(
      (k) => m?.[k] && !protocols.has(k === "sql" ? "postgres" : k),
    );
    // MCP connections are judged per JSON-RPC request, never as HTTP requests (the CRD says the same).
    if (m?.mcp && (!rule.connections?.length || named.some((n) => connections.get(n)?.protocol !== "mcp")))
      out.push({
        path: `${at}.match.mcp`,
        message: `rule ${rule.name} matches mcp: it must list connections, all of protocol mcp`,
      });
    if (m?.http && rule.connections?.length && named.some((n) => connections.get(n)?.protocol === "mcp"))
      out.push({
        path: `${at}.match.http`,
        message: `rule ${rule.name}: match.http does not apply to protocol mcp connections (they are judged per JSON-RPC request); use match.mcp`,
      });
    for (const k of wrong)
      out.push({
        path: `${at}.match.${k}`,
        message: `rule ${rule.name} matches ${k} but none of its connections speaks ${k === "sql" ? "postgres" : k}`,
      });
    if (m?.http?.methods?.includes("CONNECT") && m.http.paths?.length) {
      out.push({
        path: `${at}.match.http`,
        message: "CONNECT tunnels are opaque: a rule allowing CONNECT cannot also scope paths",
      });
    }
  });
  out.push(...passthroughProblems(spec));
  const listeners = new Map<number, string>();
  spec.connections.forEach((c, i) => {
    const port = c.listen?.port;
    if (port === undefined) return;
    const at = `spec.connections[${i}].listen.port`;
    const holder = listeners.get(port);
    if (holder)
      out.push({
        path: at,
        message: `connection ${c.name} listens on port ${port}, as connection ${holder} does`,
      });
    const own = SIDECAR_PORTS.get(port);
    if (own)
      out.push({ path: at, message: `connection ${c.name} cannot listen on port ${port}: it is ${own}` });
    listeners.set(port, c.name);
  });
  (spec.masking ?? []).forEach((rule, i) => {
    (rule.fields ?? []).forEach((field, j) => {
      try {
        parseJsonPath(field);
      } catch (e) {
        out.push({
          path: `spec.masking[${i}].fields[${j}]`,
          message: `masking rule ${rule.name}: ${(e as Error).message}`,
        });
      }
    });
    for (const n of rule.connections ?? [])
      if (!connections.has(n))
        out.push({
          path: `spec.masking[${i}].connections`,
          message: `masking rule ${rule.name} names unknown connection ${n}`,
        });
  });
  if (spec.identity?.requireUserToken && !spec.identity.oidc)
    out.push({ path: "spec.identity", message: "requireUserToken needs identity.oidc" });
  return out;
}
