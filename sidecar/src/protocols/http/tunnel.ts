// Opaque tunnels: `CONNECT host:port` on the explicit proxy, and TLS the transparent listener
// captured. The sidecar cannot read inside (the agent does its own TLS), so it can neither inject
// a credential nor mask: only the host-level `http-tunnel` operation is judged, and the audit
// event says so through the decision's reason. Allowed tunnels splice bytes to the connection's
// target.
import type { IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import { judgeTunnel, refusal } from "../../decisions/index.ts";
import { isIdentityError } from "../../identity/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { Subject } from "../../policy/types.ts";
import { type SidecarContext, subjectFor } from "../../runtime/context.ts";
import { refuseUnknown } from "./authorize.ts";
import { createExchange, type Exchange } from "./exchange.ts";
import { identityStatus, resolveIdentity, workloadAuditIdentity } from "./identity.ts";
import { writeSocketJson } from "./respond.ts";
import { parseAuthority, TargetError } from "./target.ts";
import { classifyUpstreamError } from "./upstream-errors.ts";

export interface TunnelDeps {
  ctx: SidecarContext;
  connectTimeoutMs: number;
  /** Open tunnels, so close() can cut them. */
  open: Set<Duplex>;
}

function splice(deps: TunnelDeps, connection: string, client: Duplex, upstream: Socket): void {
  const { ctx, open } = deps;
  open.add(client);
  ctx.metrics.sessions.inc({ connection, protocol: "http" });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    open.delete(client);
    ctx.metrics.sessions.dec({ connection, protocol: "http" });
    client.destroy();
    upstream.destroy();
  };
  client.on("error", close);
  upstream.on("error", close);
  client.on("close", close);
  upstream.on("close", close);
  client.pipe(upstream);
  upstream.pipe(client);
}

/** Connects to the connection's target; on success audits, then calls `ready` and splices. */
function openTunnel(
  deps: TunnelDeps,
  ex: Exchange,
  connection: CompiledConnection,
  client: Duplex,
  head: Buffer | undefined,
  ready: () => void,
  refused: (status: number, detail: string) => void,
): void {
  const { ctx } = deps;
  const started = performance.now();
  const upstream = connect({ host: connection.spec.target.host, port: connection.spec.target.port });
  upstream.setNoDelay(true);
  const timer = setTimeout(() => {
    const e = new Error("connect timeout") as Error & { code: string };
    e.code = "ECONNECT_TIMEOUT";
    upstream.destroy(e);
  }, deps.connectTimeoutMs);
  timer.unref();
  const onError = (err: Error) => {
    clearTimeout(timer);
    const failure = classifyUpstreamError(err);
    ctx.metrics.upstreamErrors.inc({ connection: ex.connection, protocol: "http", reason: failure.reason });
    ex.upstream = { error: failure.detail };
    ex.finish();
    refused(failure.status, failure.detail);
  };
  upstream.once("error", onError);
  upstream.once("connect", () => {
    clearTimeout(timer);
    upstream.off("error", onError);
    ctx.metrics.upstreamSeconds.observe(
      { connection: ex.connection, protocol: "http" },
      (performance.now() - started) / 1000,
    );
    ex.upstream = { status: "connected" };
    ex.finish();
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    ready();
    if (head && head.length > 0) upstream.write(head);
    splice(deps, ex.connection, client, upstream);
  });
}

function decide(ctx: SidecarContext, ex: Exchange, connection: CompiledConnection, subject: Subject) {
  const t0 = performance.now();
  const decision = judgeTunnel(ctx.policies.current(), connection.spec.name, subject);
  ctx.metrics.decisionSeconds.observe({ protocol: "http" }, (performance.now() - t0) / 1000);
  ex.decide(decision);
  return decision;
}

/** `CONNECT host:port` on the explicit proxy. */
export async function handleConnect(
  deps: TunnelDeps,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  session: string,
): Promise<void> {
  const { ctx } = deps;
  socket.on("error", () => socket.destroy());
  const exchange = (connection: string, operation: Exchange["operation"]) =>
    createExchange(ctx, {
      session,
      connection,
      identity: workloadAuditIdentity(ctx),
      operation,
      failClosed: () => socket.destroy(),
    });
  let authority: { host: string; port: number };
  try {
    authority = parseAuthority(req.url ?? "");
  } catch (err) {
    if (!(err instanceof TargetError)) throw err;
    exchange("", { kind: "http-tunnel" })
      .decide(refusal("badConnectTarget", undefined, err.message))
      .finish();
    writeSocketJson(socket, 400, { error: "bad_target", reason: err.message });
    return;
  }
  const destination = `${authority.host}:${authority.port}`;
  const connection = ctx.policies.current().connectionFor(authority.host, authority.port);
  if (!connection) {
    refuseUnknown(ctx, exchange("", { kind: "tcp", destination }), destination, {
      refuse: (status, body) => writeSocketJson(socket, status, body),
    });
    return;
  }
  const tunnelEx = exchange(connection.spec.name, { kind: "http-tunnel" });
  let subject: Subject;
  try {
    const identity = await resolveIdentity(ctx, connection, req.headers);
    subject = identity.subject;
    tunnelEx.identity = identity.audit;
  } catch (err) {
    if (!isIdentityError(err)) throw err;
    tunnelEx.decide(refusal("identityRefused", undefined, err.code)).finish();
    writeSocketJson(socket, identityStatus(err), {
      error: "invalid_identity",
      code: err.code,
      reason: err.message,
    });
    return;
  }
  const decision = decide(ctx, tunnelEx, connection, subject);
  if (decision.action !== "allow") {
    tunnelEx.finish();
    writeSocketJson(socket, 403, {
      error: "denied",
      policy: decision.policy ?? null,
      rule: decision.rule ?? null,
      reason: decision.reason,
    });
    return;
  }
  openTunnel(
    deps,
    tunnelEx,
    connection,
    socket,
    head,
    () => socket.write("HTTP/1.1 200 Connection Established\r\n\r\n"),
    (status, detail) => writeSocketJson(socket, status, { error: "upstream_unavailable", reason: detail }),
  );
}

/**
 * A captured socket the agent speaks TLS on (the transparent listener saw a ClientHello in
 * `head`): judged as a tunnel for the workload identity; refused by closing the socket.
 */
export function acceptTunnel(
  deps: TunnelDeps,
  socket: Duplex,
  connection: CompiledConnection,
  head: Buffer | undefined,
  session: string,
): void {
  const { ctx } = deps;
  socket.on("error", () => socket.destroy());
  const ex = createExchange(ctx, {
    session,
    connection: connection.spec.name,
    identity: workloadAuditIdentity(ctx),
    operation: { kind: "http-tunnel" },
    failClosed: () => socket.destroy(),
  });
  const current = ctx.policies.current().connections.get(connection.spec.name);
  if (!current) {
    refuseUnknown(ctx, ex, connection.spec.name, { refuse: () => socket.destroy() });
    return;
  }
  const decision = decide(ctx, ex, current, subjectFor(ctx.workload));
  if (decision.action !== "allow") {
    ex.finish();
    socket.destroy();
    return;
  }
  openTunnel(
    deps,
    ex,
    current,
    socket,
    head,
    () => undefined,
    () => socket.destroy(),
  );
}
