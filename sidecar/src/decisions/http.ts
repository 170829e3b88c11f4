// HTTP judgement: a request becomes an `http` operation (its path normalized the way a decoding
// upstream reads it: policy/http-path.ts), and the policy engine decides it; a CONNECT (or captured
// TLS) is the host-level `http-tunnel` operation. The HTTP guard and `airlock policy test --http`
// both ask here, so they answer the same.
import type { CompiledConnection, PolicySet } from "../policy/compile.ts";
import { normalizePath, PathError } from "../policy/http-path.ts";
import { isPassthrough } from "../policy/passthrough.ts";
import type { Decision, Operation, Subject } from "../policy/types.ts";
import { refusal } from "./refusals.ts";

export type HttpOperation = Extract<Operation, { kind: "http" }>;

export type HttpRequestJudgement =
  | {
      ok: true;
      operation: HttpOperation /** What the upstream gets (normalized, re-encoded). */;
      forwardPath: string;
    }
  /** The path cannot be judged: refused before any rule (the path itself is not recorded). */
  | { ok: false; operation: HttpOperation; decision: Decision; detail: string };

/** The operation of a request (path without the query), or why the path is refused. */
export function httpOperation(method: string, path: string, websocket: boolean): HttpRequestJudgement {
  const m = method.toUpperCase();
  try {
    const n = normalizePath(path);
    return {
      ok: true,
      operation: { kind: "http", method: m, path: n.match, websocket },
      forwardPath: n.forward,
    };
  } catch (err) {
    if (!(err instanceof PathError)) throw err;
    return {
      ok: false,
      operation: { kind: "http", method: m, path: "(refused)", websocket },
      decision: refusal("badPath", undefined, err.message),
      detail: err.message,
    };
  }
}

/** The policy's decision for a request on `connection`. */
export function judgeHttp(
  policies: PolicySet,
  connection: string,
  subject: Subject,
  op: HttpOperation,
): Decision {
  return policies.evaluate(connection, subject, op);
}

/** The policy's decision for an opaque tunnel (CONNECT, captured TLS) to `connection`'s target. */
export function judgeTunnel(policies: PolicySet, connection: string, subject: Subject): Decision {
  return policies.evaluate(connection, subject, { kind: "http-tunnel" });
}

/** How a CONNECT to `connection` is answered, by what the agent sends inside the tunnel. */
export interface ConnectJudgement {
  /** The decision for the agent's own TLS relayed opaque (host-level; only passthrough connections allow it). */
  tls: Decision;
  /** The agent's TLS is relayed opaque when `tls` allows (tls.mode passthrough); otherwise intercepted. */
  passthrough: boolean;
  /** Plain HTTP (or intercepted TLS) inside goes through the connection's HTTP guard, request by request. */
  inspectsHttp: boolean;
}

export function judgeConnect(policies: PolicySet, connection: string, subject: Subject): ConnectJudgement {
  const tls = judgeTunnel(policies, connection, subject);
  const spec = policies.connections.get(connection)?.spec;
  // A passthrough connection relays only the agent's TLS (allowed or not); any other reads it.
  const passthrough = spec !== undefined && isPassthrough(spec);
  return { tls, passthrough, inspectsHttp: !passthrough && policies.mayAdmitHttp(connection, subject) };
}

/** Whether the rule that decided lets non-text request bodies through (`match.http.binaryBodies`). */
export function binaryBodiesAllowed(connection: CompiledConnection, rule: string | undefined): boolean {
  if (rule === undefined) return false;
  for (const list of [connection.rules.allow, connection.rules.requireApproval])
    for (const r of list) if (r.rule.name === rule) return r.rule.match?.http?.binaryBodies === true;
  return false;
}
