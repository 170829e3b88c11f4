// Tunnels: `CONNECT host:port` on the explicit proxy, and TLS the transparent listener captured.
// The connection's TLS mode decides what the agent's TLS becomes: on a `tls.mode: passthrough`
// connection it is relayed opaque to the target (passthrough.ts: host-level, for pinned clients);
// on any other HTTPS connection it is terminated with a pod CA leaf and every request inside goes
// through the HTTP guard (tls/intercept.ts); nothing else ever becomes a raw tunnel. Plain HTTP
// inside a CONNECT (Node's NODE_USE_ENV_PROXY tunnels even http:// URLs) is handed to the
// connection's HTTP guard, which judges, masks and credentials every request as on its own port.
import type { IncomingMessage } from "node:http";
import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import { judgeConnect, judgeTunnel } from "../../decisions/http.ts";
import { refusal } from "../../decisions/refusals.ts";
import { isIdentityError } from "../../identity/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import { isPassthrough } from "../../policy/passthrough.ts";
import { ridesHttp } from "../../policy/protocols.ts";
import type { Subject } from "../../policy/types.ts";
import { type SidecarContext, subjectFor } from "../../runtime/context.ts";
import { sniff } from "../../transparent/sniff.ts";
import { refuseUnknown } from "./authorize.ts";
import { createExchange, type Exchange } from "./exchange.ts";
import { identityStatus, resolveIdentity, workloadAuditIdentity } from "./identity.ts";
import { relay } from "./passthrough.ts";
import { writeSocketJson } from "./respond.ts";
import { parseAuthority, TargetError } from "./target.ts";
import { type TlsRefusal, terminateTls } from "./tls/intercept.ts";
import type { PodCa } from "./tls/pod-ca.ts";

export interface TunnelDeps {
  ctx: SidecarContext;
  connectTimeoutMs: number;
  /** Open tunnels, so close() can cut them. */
  open: Set<Duplex>;
  /** Serves plain HTTP found inside a CONNECT with `connection`'s HTTP guard (`first` unread). */
  inspect(connection: string, socket: Duplex): void;
  /** The pod CA in force (absent: no interception; the agent's TLS is refused unless the connection is passthrough). */
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
  if (isPassthrough(connection.spec)) {
    if (judged.tls.action !== "allow") {
      tunnelEx.finish();
      denied();
      return;
    }
    relay(
      deps,
      tunnelEx,
      connection,
      socket,
      head,
      () => socket.write("HTTP/1.1 200 Connection Established\r\n\r\n"),
      (status, detail) => writeSocketJson(socket, status, { error: "upstream_unavailable", reason: detail }),
    );
    return;
  }
  if (!judged.inspectsHttp || !ridesHttp(connection.spec.protocol)) {
    tunnelEx.finish();
    denied();
    return;
  }
  const ca = deps.podCa?.();
  // Interception: the agent's TLS to an HTTPS connection whose host the pod CA covers.
  const intercept =
    connection.spec.protocol === "http" &&
    connection.spec.tls?.mode !== "disable" &&
    ca?.covers(authority.host) === true;
  socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
  firstBytes(socket, head, (first) => {
    // Plain HTTP inside is not an operation of its own: each request is one, audited by the guard.
    if (!isTls(first)) return handOver(deps, connection.spec.name, socket, first);
    if (!intercept || !ca) {
      // TLS the sidecar cannot read (no pod CA, or a connection that speaks plaintext upstream).
      tunnelEx.finish();
      socket.destroy();
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
  if (!judged.inspectsHttp) return false;
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
  const passthrough = isPassthrough(current.spec);
  if (head && !passthrough && interceptCaptured(deps, current, socket, head, session)) return;
  const decision = decide(ctx, ex, current, subjectFor(ctx.workload));
  if (decision.action !== "allow" || !passthrough) {
    ex.finish();
    socket.destroy();
    return;
  }
  relay(
    deps,
    ex,
    current,
    socket,
    head,
    () => undefined,
    () => socket.destroy(),
  );
}
