// Tunnels: `CONNECT host:port` on the explicit proxy, and TLS the transparent listener captured.
// What the agent sends first inside a CONNECT decides how it is treated: its own TLS cannot be
// read (no credential injection, no masking), so only the host-level `http-tunnel` operation is
// judged, the audit event says so, and an allowed tunnel splices bytes to the connection's
// target; plain HTTP (Node's NODE_USE_ENV_PROXY tunnels even http:// URLs) is handed to the
// connection's HTTP guard, which judges, masks and credentials every request as on its own port.
import type { IncomingMessage } from "node:http";
import { connect, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import { judgeConnect, judgeTunnel } from "../../decisions/http.ts";
import { refusal } from "../../decisions/refusals.ts";
import { isIdentityError } from "../../identity/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import { ridesHttp } from "../../policy/protocols.ts";
import type { Subject } from "../../policy/types.ts";
import { type SidecarContext, subjectFor } from "../../runtime/context.ts";
import { sniff } from "../../transparent/sniff.ts";
import { refuseUnknown } from "./authorize.ts";
import { createExchange, type Exchange } from "./exchange.ts";
import { identityStatus, resolveIdentity, workloadAuditIdentity } from "./identity.ts";
import { writeSocketJson } from "./respond.ts";
import { parseAuthority, TargetError } from "./target.ts";
import { type TlsRefusal, terminateTls } from "./tls/intercept.ts";
import type { PodCa } from "./tls/pod-ca.ts";
import { classifyUpstreamError } from "./upstream-errors.ts";

export interface TunnelDeps {
  ctx: SidecarContext;
  connectTimeoutMs: number;
  /** Open tunnels, so close() can cut them. */
  open: Set<Duplex>;
  /** Serves plain HTTP found inside a CONNECT with `connection`'s HTTP guard (`first` unread). */
  inspect(connection: string, socket: Duplex): void;
  /** The pod CA in force (absent: no interception, the agent's TLS stays a host-level tunnel). */
  podCa?: () => PodCa | undefined;
  /** Whether the HTTP guard read anything from `socket` (a decrypted, intercepted session). */
  spokeHttp?: (socket: Duplex) => boolean;
}

/** A TLS record starts with content type 22 (handshake): the agent's own TLS. */
const isTls = (first: Buffer) => first[0] === 0x16;

/** The first bytes the agent sends inside a tunnel (`head` when they came with the CONNECT). */
function firstBytes(socket: Duplex, head: Buffer | undefined, then: (first: Buffer) => void): void {
  if (head && head.length > 0) {
    then(head);
    return;
  }
  const onData = (chunk: Buffer) => {
    socket.off("data", onData);
    socket.pause();
    then(chunk);
  };
  socket.on("data", onData);
}

/** Plain HTTP inside the tunnel: the connection's HTTP guard reads it from the first byte. */
function handOver(deps: TunnelDeps, connection: string, socket: Duplex, first: Buffer): void {
  socket.unshift(first);
  deps.inspect(connection, socket);
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
  /** CONNECT: look at what the agent sends first; plain HTTP goes to the HTTP guard instead. */
  inspectHttp = false,
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
    if (!inspectHttp) {
      if (head && head.length > 0) upstream.write(head);
      splice(deps, ex.connection, client, upstream);
      return;
    }
    firstBytes(client, head, (first) => {
      if (!isTls(first)) {
        upstream.destroy();
        handOver(deps, ex.connection, client, first);
        return;
      }
      upstream.write(first);
      splice(deps, ex.connection, client, upstream);
    });
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
  const t0 = performance.now();
  const judged = judgeConnect(ctx.policies.current(), connection.spec.name, subject);
  ctx.metrics.decisionSeconds.observe({ protocol: "http" }, (performance.now() - t0) / 1000);
  const denied = () =>
    writeSocketJson(socket, 403, {
      error: "denied",
      policy: judged.tls.policy ?? null,
      rule: judged.tls.rule ?? null,
      reason: judged.tls.reason,
    });
  tunnelEx.decide(judged.tls);
  const ca = deps.podCa?.();
  // Interception: an HTTPS connection whose host the pod CA covers, unless a CONNECT rule admits
  // an opaque tunnel (the per-rule passthrough, for pinned clients).
  const intercept =
    judged.tls.action !== "allow" &&
    judged.inspectsHttp &&
    connection.spec.protocol === "http" &&
    connection.spec.tls?.mode !== "disable" &&
    ca?.covers(authority.host) === true;
  if (intercept && ca) {
    socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    firstBytes(socket, head, (first) => {
      if (!isTls(first)) {
        handOver(deps, connection.spec.name, socket, first);
        return;
      }
      socket.unshift(first);
      void terminateTls({
        ca,
        host: authority.host,
        socket,
        logger: ctx.logger,
        connection: connection.spec.name,
        // Each request inside is one operation, audited by the HTTP guard.
        ready: (decrypted) => deps.inspect(connection.spec.name, decrypted),
        ...(deps.spokeHttp ? { spoke: deps.spokeHttp } : {}),
        refused: (reason, detail) =>
          auditRefusedTls(ctx, tunnelEx, connection.spec.name, authority.host, reason, detail),
      }).catch((err: unknown) => {
        ctx.logger.warn({ connection: connection.spec.name, err: String(err) }, "TLS interception failed");
        socket.destroy();
      });
    });
    return;
  }
  if (judged.tls.action === "allow") {
    openTunnel(
      deps,
      tunnelEx,
      connection,
      socket,
      head,
      () => socket.write("HTTP/1.1 200 Connection Established\r\n\r\n"),
      (status, detail) => writeSocketJson(socket, status, { error: "upstream_unavailable", reason: detail }),
      ridesHttp(connection.spec.protocol),
    );
    return;
  }
  if (!judged.inspectsHttp || !ridesHttp(connection.spec.protocol)) {
    tunnelEx.finish();
    denied();
    return;
  }
  // No tunnel for TLS, but rules that may admit requests: answer, and see what comes.
  socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
  firstBytes(socket, head, (first) => {
    if (isTls(first)) {
      tunnelEx.finish();
      socket.destroy();
      return;
    }
    // Not an operation of its own: each request inside is one, audited by the HTTP guard.
    handOver(deps, connection.spec.name, socket, first);
  });
}

const REFUSAL_TEXT: Record<TlsRefusal, string> = {
  tls_untrusted_by_client:
    "the agent's TLS client rejected the Airlock pod CA's certificate: its trust store lacks the Airlock trust bundle (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, a JVM truststore), or it pins the server's key",
  sni_mismatch: "the TLS server name is not the host the tunnel was opened for",
  no_sni: "the agent sent no TLS server name for a named host",
  handshake_failed: "the agent's TLS handshake did not complete",
  closed_before_request:
    "the agent closed the intercepted TLS session right after the handshake without sending a request: a client that pins the server's key or certificate rejects the pod CA's leaf this way (give the connection tls: passthrough, or unpin)",
};

/** An intercepted handshake that did not complete: one audit event (nothing was forwarded) and a count. */
function auditRefusedTls(
  ctx: SidecarContext,
  ex: Exchange,
  connection: string,
  host: string,
  reason: TlsRefusal,
  detail: string,
): void {
  ctx.metrics.tlsInterceptRefusals.inc({ connection, reason });
  ex.decide({ action: "deny", reason: `${REFUSAL_TEXT[reason]} (${host}: ${detail})` });
  ex.end(reason);
}

/**
 * Captured TLS whose SNI is a name of the connection the pod CA covers, with no rule asking for an
 * opaque tunnel but rules that may admit requests: terminated and handed to the HTTP guard, as a
 * CONNECT would be. Returns false when the socket is left to the host-level tunnel path.
 */
function interceptCaptured(
  deps: TunnelDeps,
  connection: CompiledConnection,
  socket: Duplex,
  head: Buffer,
  session: string,
): boolean {
  const { ctx } = deps;
  const ca = deps.podCa?.();
  if (!ca || connection.spec.protocol !== "http" || connection.spec.tls?.mode === "disable") return false;
  const hello = sniff(head);
  const name = hello.kind === "tls" ? hello.serverName?.toLowerCase() : undefined;
  const names = [connection.spec.target.host, ...(connection.spec.target.aliases ?? [])].map((h) =>
    h.toLowerCase(),
  );
  if (!name || !names.includes(name) || !ca.covers(name)) return false;
  const judged = judgeConnect(ctx.policies.current(), connection.spec.name, subjectFor(ctx.workload));
  if (judged.tls.action === "allow" || !judged.inspectsHttp) return false;
  socket.unshift(head);
  void terminateTls({
    ca,
    host: name,
    socket,
    logger: ctx.logger,
    connection: connection.spec.name,
    ready: (decrypted) => deps.inspect(connection.spec.name, decrypted),
    ...(deps.spokeHttp ? { spoke: deps.spokeHttp } : {}),
    refused: (reason, detail) => {
      const ex = createExchange(ctx, {
        session,
        connection: connection.spec.name,
        identity: workloadAuditIdentity(ctx),
        operation: { kind: "http-tunnel" },
        failClosed: () => socket.destroy(),
      });
      auditRefusedTls(ctx, ex, connection.spec.name, name, reason, detail);
    },
  }).catch((err: unknown) => {
    ctx.logger.warn({ connection: connection.spec.name, err: String(err) }, "TLS interception failed");
    socket.destroy();
  });
  return true;
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
  if (head && interceptCaptured(deps, current, socket, head, session)) return;
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
