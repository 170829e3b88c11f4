// `tls.mode: passthrough`: an HTTP connection whose agent TLS is relayed opaque (pinned clients).
// Nothing inside such a tunnel is read, so anything a policy says about its content — paths,
// methods other than CONNECT, approvals, masking, credentials — could not be enforced. Those are
// refused where the policy is loaded, with the path and the reason, never silently ignored (the
// CRD's CEL rules say the same for policies that pass through an API server).
import type { AgentAccessPolicySpec, Connection } from "../../../api/src/index.ts";
import type { PolicyProblem } from "./types.ts";

type Problem = Omit<PolicyProblem, "policy">;

/** Whether the agent's own TLS to `c` is relayed opaque instead of intercepted. */
export const isPassthrough = (c: Pick<Connection, "tls">): boolean => c.tls?.mode === "passthrough";

/** Connection fields that act on requests (or on TLS the sidecar would originate): none can apply. */
const REQUEST_FIELDS: readonly [field: string, read: (c: Connection) => unknown][] = [
  ["tls.caSecretRef", (c) => c.tls?.caSecretRef],
  ["tls.serverName", (c) => c.tls?.serverName],
  ["credentials", (c) => c.credentials],
  ["userHeader", (c) => c.userHeader],
  ["errorFormat", (c) => c.errorFormat],
  ["limits", (c) => c.limits],
  ["listen", (c) => c.listen],
];

export function passthroughProblems(spec: AgentAccessPolicySpec): Problem[] {
  const out: Problem[] = [];
  const passthrough = new Set(spec.connections.filter(isPassthrough).map((c) => c.name));
  spec.connections.forEach((c, i) => {
    if (!passthrough.has(c.name)) return;
    if (c.protocol !== "http")
      out.push({
        path: `spec.connections[${i}].tls.mode`,
        message: `tls.mode passthrough is only for protocol http; connection ${c.name} speaks ${c.protocol}`,
      });
    for (const [field, read] of REQUEST_FIELDS)
      if (read(c) !== undefined)
        out.push({
          path: `spec.connections[${i}].${field}`,
          message: `connection ${c.name} has tls.mode passthrough: the agent's TLS is relayed opaque, so ${field} cannot be enforced on it`,
        });
  });

  spec.rules.forEach((rule, i) => {
    const at = `spec.rules[${i}]`;
    const explicit = rule.connections?.length ? rule.connections : undefined;
    const applies = (explicit ?? spec.connections.map((c) => c.name)).filter((n) => passthrough.has(n));
    const http = rule.match?.http;
    const methods = http?.methods;
    // A CONNECT allow rule opens an opaque tunnel: only a passthrough connection has one.
    if (rule.action === "allow" && methods?.includes("CONNECT")) {
      const others = explicit?.filter((n) => !passthrough.has(n)) ?? [];
      if (!explicit || others.length)
        out.push({
          path: `${at}.connections`,
          message: `rule ${rule.name} allows CONNECT, which opens an opaque tunnel: only tls.mode passthrough connections have one, so it must list its connections, all of them passthrough${others.length ? ` (${others.join(", ")} ${others.length > 1 ? "are" : "is"} intercepted and judged per request)` : ""}`,
        });
    }
    if (applies.length === 0) return;
    const on = `passthrough connection${applies.length > 1 ? "s" : ""} ${applies.join(", ")}`;
    const matchesTunnel = !rule.match || http !== undefined;
    if (http) {
      const what: string[] = [];
      if (methods?.length !== 1 || methods[0] !== "CONNECT")
        what.push(methods ? `methods ${methods.join(", ")}` : "every method");
      if (http.paths?.length) what.push("paths");
      if (http.websocket === true) what.push("websocket");
      if (http.binaryBodies === true) what.push("binaryBodies");
      if (what.length)
        out.push({
          path: `${at}.match.http`,
          message: `rule ${rule.name} applies to ${on}, whose requests stay encrypted end to end: its ${what.join(", ")} cannot be enforced there; match only methods [CONNECT] on it${explicit ? "" : ", or list the rule's connections without it"}`,
        });
    }
    if (rule.action === "requireApproval" && matchesTunnel)
      out.push({
        path: `${at}.action`,
        message: `rule ${rule.name} requires approval on ${on}: an opaque tunnel cannot be held for approval (allow or deny its CONNECT)`,
      });
    if (rule.action === "allow" && !rule.match && explicit)
      out.push({
        path: `${at}.match`,
        message: `rule ${rule.name} has no match and opens nothing on ${on}: its tunnel is opened only by a rule matching methods [CONNECT]`,
      });
  });

  (spec.masking ?? []).forEach((m, i) => {
    const explicit = m.connections?.length ? m.connections : undefined;
    const applies = explicit
      ? explicit.filter((n) => passthrough.has(n))
      : m.detectors?.length || m.fields?.length
        ? [...passthrough]
        : [];
    if (applies.length)
      out.push({
        path: `spec.masking[${i}]${explicit ? ".connections" : ""}`,
        message: `masking rule ${m.name} applies to passthrough connection${applies.length > 1 ? "s" : ""} ${applies.join(", ")}, whose bytes stay encrypted: nothing can be masked there; list the masking rule's connections without ${applies.length > 1 ? "them" : "it"}`,
      });
  });
  return out;
}
