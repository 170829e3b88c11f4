// The HTTP guard: per-connection reverse listeners (127.0.0.1:<connection.listen.port>), sockets
// handed over by the transparent listener, and the explicit forward proxy (HTTP_PROXY, default
// 127.0.0.1:15901). Each request is authorized (authorize.ts), then forwarded (forward.ts,
// websocket.ts) or tunnelled (tunnel.ts); every request ends in exactly one audit event.

import { randomUUID } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { refusal } from "../../decisions/refusals.ts";
import type { CompiledConnection, PolicySet } from "../../policy/compile.ts";
import { ridesHttp } from "../../policy/protocols.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { createServer } from "../../runtime/node-http.ts";
import type { AcceptInfo, ConnectionHandler } from "../handler.ts";
import { createMcpWaits } from "../mcp/approval.ts";
import { createMcpSessions } from "../mcp/sessions.ts";
import { createToolPins } from "../mcp/tool-pins.ts";
import type { ApprovalGate } from "./approval.ts";
import { type AuthorizeDeps, authorize, type Responder, type Route } from "./authorize.ts";
import { createExchange, type Exchange } from "./exchange.ts";
import { FIRST_BYTES_TIMEOUT_MS, firstBytesOf, TLS_HANDSHAKE } from "./first-bytes.ts";
import { createForwarder } from "./forward.ts";
import { workloadAuditIdentity } from "./identity.ts";
import { createMaskerCache } from "./masking.ts";
import { type ErrorBody, sendJson, sendRawJson, writeSocketJson } from "./respond.ts";
import { parseAbsoluteForm, parseAuthority, parseOriginForm, TargetError } from "./target.ts";
import type { PodCa } from "./tls/pod-ca.ts";
import { acceptTunnel, handleConnect, type TunnelDeps } from "./tunnel.ts";
import { createUpstreamPool } from "./upstream.ts";
import { createWebSocketForwarder, isWebSocketUpgrade, type WebSocketForwarder } from "./websocket.ts";

export const DEFAULT_PROXY_PORT = 15901;
export const DEFAULT_BIND_HOST = "127.0.0.1";
/** Metric label for agent sessions on the explicit proxy, whose requests may go anywhere. */
export const PROXY_SESSION_LABEL = "(proxy)";

export interface HttpGuardOptions {
  /** Asked when a rule says requireApproval; absent → such requests fail closed (approval_unavailable). */
  approvals?: ApprovalGate;
  /** Address listeners bind to unless listen()/listenProxy() say otherwise (default 127.0.0.1). */
  bindHost?: string;
  /** Idle time allowed on an upstream socket, ms (default 300000: LLM streams pause). */
  upstreamTimeoutMs?: number;
  /** Upstream TCP/TLS connect timeout, ms (default 10000). */
  connectTimeoutMs?: number;
  /** The pod CA in force; with it, CONNECTs to HTTPS hosts it covers are intercepted (tls/intercept.ts). */
  podCa?: () => PodCa | undefined;
}

export interface ListenOptions {
  /** Default: the connection's listen.port (or 15901 for the proxy); 0 picks a free port. */
  port?: number;
  host?: string;
}

export interface HttpGuard extends ConnectionHandler {
  /** Serves `connection` on its own local port. */
  listen(connection: CompiledConnection, opts?: ListenOptions): Promise<AddressInfo>;
  /** Serves the explicit forward proxy (absolute-form requests and CONNECT). */
  listenProxy(opts?: ListenOptions): Promise<AddressInfo>;
  /** Opens listeners for the current policy's HTTP connections with a listen port, closes stale ones. */
  syncListeners(): Promise<void>;
  /** A captured socket carrying TLS from the agent: judged and spliced as an opaque tunnel. */
  acceptTunnel(socket: Socket, connection: CompiledConnection, info: AcceptInfo): void;
  /** Closes every listener, agent connection, tunnel and upstream socket now. */
  close(): Promise<void>;
}

function listenOn(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    server.closeIdleConnections();
  });
}

const resResponder = (res: ServerResponse): Responder => ({
  refuse: (status, body, opts) => sendJson(res, status, body, opts),
  json: (status, body, close) => sendRawJson(res, status, body, close),
  waiting: (w) => {
    if (!res.headersSent && !res.destroyed)
      // Node sends 103 only with a Link (RFC 8297): the link names the request, the headers say the rest.
      res.writeEarlyHints({
        link: `<urn:airlock:access-request:${encodeURIComponent(w.request)}>; rel="https://airlock.dev/rels/approval-pending"`,
        "x-airlock-approval-request": w.request,
        "x-airlock-approval-expires": w.expiresAt,
        "x-airlock-approval-hint": w.approveHint,
      });
  },
});
const socketResponder = (socket: Duplex): Responder => ({
  refuse: (status, body, opts) => writeSocketJson(socket, status, body, opts?.format),
});

const requireModule = createRequire(import.meta.url);

export function createHttpGuard(ctx: SidecarContext, options: HttpGuardOptions = {}): HttpGuard {
  const pool = createUpstreamPool(ctx.secrets);
  const maskers = createMaskerCache(ctx.hashKey);
  const fwdDeps = {
    ctx,
    pool,
    maskers,
    upstreamTimeoutMs: options.upstreamTimeoutMs ?? 300_000,
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
  };
  const forwarder = createForwarder(fwdDeps);
  // http-proxy-3 serves WebSocket upgrades only: it loads with the first one.
  let wsForwarder: WebSocketForwarder | undefined;
  const webSockets = (): WebSocketForwarder => {
    if (wsForwarder) return wsForwarder;
    const { ProxyServer } = requireModule("http-proxy-3") as typeof import("http-proxy-3");
    const proxy = new ProxyServer();
    // http-proxy-3 re-emits socket errors here; without a listener it would throw.
    proxy.on("error", (err, _req, resOrSocket) => {
      ctx.logger.debug({ err: err.message }, "proxy socket error");
      if ("destroy" in resOrSocket && typeof resOrSocket.destroy === "function") resOrSocket.destroy();
    });
    proxy.on("econnreset", () => undefined);
    wsForwarder = createWebSocketForwarder({ ...fwdDeps, proxy });
    return wsForwarder;
  };
  const authDeps: AuthorizeDeps = {
    ctx,
    approvals: options.approvals,
    mcpWaits: createMcpWaits(),
    mcpSessions: createMcpSessions(ctx.hashKey),
    mcpPins: createToolPins(),
  };
  const tunnels = new Set<Duplex>();
  // Every agent socket, including upgraded ones node's HTTP server no longer tracks.
  const agentSockets = new Set<Duplex>();
  const tunnelDeps: TunnelDeps = {
    ctx,
    connectTimeoutMs: fwdDeps.connectTimeoutMs,
    open: tunnels,
    ...(options.podCa ? { podCa: options.podCa } : {}),
    inspect(connection, socket) {
      handoverServer(connection).emit("connection", socket);
      socket.resume();
    },
    spokeHttp: (socket) => spoke.has(socket),
  };
  /** Sockets on which the agent sent something the HTTP parser read (a request, or bytes it refused). */
  const spoke = new WeakSet<Duplex>();

  const sessions = new WeakMap<Duplex, string>();
  const sessionOf = (socket: Duplex) => {
    let s = sessions.get(socket);
    if (!s) {
      s = randomUUID();
      sessions.set(socket, s);
    }
    return s;
  };

  let inflight = 0;
  let draining = false;
  const idle = new Set<() => void>();
  const begin = () => {
    inflight++;
  };
  const done = () => {
    inflight--;
    if (inflight === 0) for (const r of idle) r();
  };

  /** Audits a request refused before a connection was known (malformed target). */
  const refuseEarly = (
    socket: Duplex,
    connection: string,
    reason: string,
    respond: (status: number, body: ErrorBody) => void,
  ) => {
    createExchange(ctx, {
      session: sessionOf(socket),
      connection,
      identity: workloadAuditIdentity(ctx),
      operation: { kind: "tcp", destination: "(unparsed)" },
      failClosed: () => socket.destroy(),
    })
      .decide(refusal("badTarget", undefined, reason))
      .finish();
    respond(400, { error: "bad_target", reason });
  };

  // Resolves where a request goes; returns undefined after refusing a malformed target.
  type Router = (req: IncomingMessage, set: PolicySet) => Route | { bad: string };

  const connectionRouter =
    (name: string): Router =>
    (req, set) => {
      let target: { path: string; query: string };
      try {
        target = parseOriginForm(req.url ?? "");
      } catch (err) {
        if (!(err instanceof TargetError)) throw err;
        return { bad: err.message };
      }
      const conn = set.connections.get(name);
      return {
        set,
        connection: conn && ridesHttp(conn.spec.protocol) ? conn : undefined,
        destination: name,
        pathAndQuery: target.path + target.query,
      };
    };

  const proxyRouter: Router = (req, set) => {
    try {
      const url = req.url ?? "";
      let host: string;
      let port: number;
      let pathAndQuery: string;
      if (url.startsWith("/")) {
        // Origin-form on the proxy port: the Host header names the destination.
        ({ host, port } = parseAuthority(req.headers.host ?? "", 80));
        pathAndQuery = url;
      } else {
        ({ host, port, pathAndQuery } = parseAbsoluteForm(url));
      }
      const conn = set.connectionFor(host, port);
      return {
        set,
        connection: conn && ridesHttp(conn.spec.protocol) ? conn : undefined,
        destination: `${host.includes(":") ? `[${host}]` : host}:${port}`,
        pathAndQuery,
      };
    } catch (err) {
      if (!(err instanceof TargetError)) throw err;
      return { bad: err.message };
    }
  };

  function onRequest(router: Router, label: string) {
    return (req: IncomingMessage, res: ServerResponse) => {
      begin();
      // While draining, every answer closes its connection so agents reconnect elsewhere.
      if (draining) res.shouldKeepAlive = false;
      let ex: Exchange | undefined;
      res.once("close", () => {
        // Safety net: an agent that left before its answer still gets its one audit event.
        ex?.end("agent_disconnected");
        done();
      });
      const route = router(req, ctx.policies.current());
      if ("bad" in route) {
        refuseEarly(req.socket, label, route.bad, (s, b) => sendJson(res, s, b));
        return;
      }
      void (async () => {
        const authorized = await authorize(
          authDeps,
          req,
          sessionOf(req.socket),
          route,
          resResponder(res),
          false,
          (e) => {
            ex = e;
          },
        );
        if (!authorized) return;
        // `Expect: 100-continue` is answered only now (servers register checkContinue, so Node
        // does not answer it on arrival): a denied agent is never invited to send its body.
        if (req.headers.expect?.toLowerCase() === "100-continue") res.writeContinue();
        await forwarder.web(req, res, authorized);
      })().catch((err: unknown) => {
        ctx.logger.error({ err: err instanceof Error ? err.message : String(err) }, "http guard failure");
        if (ex && !ex.finished) {
          ex.upstream = { error: "internal_error" };
          ex.finish();
        }
        sendJson(res, 500, { error: "internal_error" });
      });
    };
  }

  function onUpgrade(router: Router, label: string) {
    return (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      begin();
      socket.on("error", () => socket.destroy());
      let ex: Exchange | undefined;
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        done();
      };
      socket.once("close", () => {
        ex?.end("agent_disconnected");
        finish();
      });
      const route = router(req, ctx.policies.current());
      if ("bad" in route) {
        refuseEarly(socket, label, route.bad, (s, b) => writeSocketJson(socket, s, b));
        return;
      }
      void (async () => {
        // shouldUpgradeCallback lets only WebSocket upgrades reach here.
        const authorized = await authorize(
          authDeps,
          req,
          sessionOf(socket),
          route,
          socketResponder(socket),
          true,
          (e) => {
            ex = e;
          },
        );
        if (authorized) await webSockets().ws(req, socket, head, authorized);
        // From here the tunnel belongs to the WebSocket; drain does not wait for it.
        finish();
      })().catch((err: unknown) => {
        ctx.logger.error({ err: err instanceof Error ? err.message : String(err) }, "http guard failure");
        if (ex && !ex.finished) {
          ex.upstream = { error: "internal_error" };
          ex.finish();
        }
        writeSocketJson(socket, 500, { error: "internal_error" });
      });
    };
  }

  /**
   * Requests go to `handle`, those with `Expect: 100-continue` too: with a checkContinue listener
   * Node leaves the `100 Continue` to the handler, which sends it once the request is allowed.
   */
  function serveRequests(server: Server, handle: (req: IncomingMessage, res: ServerResponse) => void) {
    server.on("request", handle);
    server.on("checkContinue", handle);
  }

  function makeServer(label: string): Server {
    const server = createServer({
      shouldUpgradeCallback: isWebSocketUpgrade,
      keepAliveTimeout: 65_000,
      headersTimeout: 30_000,
    });
    server.on("request", (req: IncomingMessage) => spoke.add(req.socket));
    for (const event of ["upgrade", "connect", "checkContinue"])
      server.on(event, (req: IncomingMessage) => spoke.add(req.socket));
    server.on("connection", (socket: Socket) => {
      sessionOf(socket);
      agentSockets.add(socket);
      socket.once("close", () => agentSockets.delete(socket));
      ctx.metrics.sessions.inc({ connection: label, protocol: "http" });
      socket.once("close", () => ctx.metrics.sessions.dec({ connection: label, protocol: "http" }));
    });
    server.on("clientError", (_err, socket: Duplex) => {
      spoke.add(socket);
      if (socket.writable) writeSocketJson(socket, 400, { error: "bad_request" });
      else socket.destroy();
    });
    return server;
  }

  // One server per connection for sockets handed over by accept(), and one per bound listen port
  // (so that moving a port never waits for the old port's connections).
  const handoverServers = new Map<string, Server>();
  const bound = new Map<string, { server: Server; port: number; host: string }>();
  const allServers = new Set<Server>();

  function connectionServer(name: string): Server {
    const router = connectionRouter(name);
    const server = makeServer(name);
    serveRequests(server, onRequest(router, name));
    server.on("upgrade", onUpgrade(router, name));
    server.on("connect", (_req: IncomingMessage, socket: Duplex) => {
      socket.on("error", () => socket.destroy());
      refuseEarly(socket, name, "CONNECT is served on the explicit proxy only", (_s, b) =>
        writeSocketJson(socket, 405, b),
      );
    });
    allServers.add(server);
    return server;
  }

  function handoverServer(name: string): Server {
    let server = handoverServers.get(name);
    if (!server) {
      server = connectionServer(name);
      handoverServers.set(name, server);
    }
    return server;
  }

  /** Stops listening; connections on the old server finish their work. */
  function unbind(name: string): void {
    const b = bound.get(name);
    if (!b) return;
    bound.delete(name);
    void closeServer(b.server).then(() => allServers.delete(b.server));
  }

  let proxyServer: Server | undefined;
  function getProxyServer(): Server {
    if (!proxyServer) {
      const server = makeServer(PROXY_SESSION_LABEL);
      serveRequests(server, onRequest(proxyRouter, ""));
      server.on("upgrade", onUpgrade(proxyRouter, ""));
      server.on("connect", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        void handleConnect(tunnelDeps, req, socket, head, sessionOf(socket)).catch((err: unknown) => {
          ctx.logger.error({ err: err instanceof Error ? err.message : String(err) }, "CONNECT failure");
          socket.destroy();
        });
      });
      allServers.add(server);
      proxyServer = server;
    }
    return proxyServer;
  }

  async function listen(connection: CompiledConnection, opts: ListenOptions = {}): Promise<AddressInfo> {
    const name = connection.spec.name;
    const port = opts.port ?? connection.spec.listen?.port;
    if (port === undefined) throw new Error(`connection ${name} has no listen port`);
    const host = opts.host ?? options.bindHost ?? DEFAULT_BIND_HOST;
    const existing = bound.get(name);
    if (existing && existing.port === port && existing.host === host && existing.server.listening)
      return existing.server.address() as AddressInfo;
    unbind(name);
    const server = connectionServer(name);
    try {
      const address = await listenOn(server, port, host);
      bound.set(name, { server, port, host });
      return address;
    } catch (err) {
      allServers.delete(server);
      throw err;
    }
  }

  return {
    accept(socket, connection, info) {
      const serve = (head: Buffer | undefined) => {
        // A captured socket on which the agent speaks TLS (port 443, or TLS on any port): judged as
        // a tunnel, intercepted when the pod CA covers its server name, never parsed as HTTP.
        if (info.via === "transparent" && head?.[0] === TLS_HANDSHAKE) {
          acceptTunnel(tunnelDeps, socket, connection, head, sessionOf(socket));
          return;
        }
        if (head && head.length > 0) socket.unshift(head);
        handoverServer(connection.spec.name).emit("connection", socket);
        // A listener that paused the socket while it peeked at it: the HTTP parser reads from here.
        socket.resume();
      };
      if (info.via !== "transparent" || (info.head && info.head.length > 0)) return serve(info.head);
      // Mapped by address alone: nothing was read yet, so look at the first bytes here.
      firstBytesOf(socket, FIRST_BYTES_TIMEOUT_MS, serve);
    },
    acceptTunnel(socket, connection, info) {
      acceptTunnel(tunnelDeps, socket, connection, info.head, sessionOf(socket));
    },
    listen,
    async listenProxy(opts = {}) {
      return listenOn(
        getProxyServer(),
        opts.port ?? DEFAULT_PROXY_PORT,
        opts.host ?? options.bindHost ?? DEFAULT_BIND_HOST,
      );
    },
    async syncListeners() {
      const set = ctx.policies.current();
      const wanted = new Map<string, CompiledConnection>();
      for (const [name, conn] of set.connections)
        if (ridesHttp(conn.spec.protocol) && conn.spec.listen?.port !== undefined) wanted.set(name, conn);
      for (const [name, b] of bound) if (wanted.get(name)?.spec.listen?.port !== b.port) unbind(name);
      for (const conn of wanted.values()) {
        try {
          await listen(conn);
        } catch (err) {
          ctx.logger.error(
            {
              connection: conn.spec.name,
              port: conn.spec.listen?.port,
              err: err instanceof Error ? err.message : "",
            },
            "cannot listen for connection",
          );
        }
      }
    },
    async drain() {
      draining = true;
      // Stop accepting; connections with work in flight finish it (and close, see onRequest).
      const listening = [...bound.values()].map((b) => b.server);
      if (proxyServer) listening.push(proxyServer);
      for (const server of listening) void closeServer(server);
      if (inflight > 0) {
        await new Promise<void>((resolve) => {
          const r = () => {
            idle.delete(r);
            resolve();
          };
          idle.add(r);
        });
      }
      for (const server of allServers) server.closeIdleConnections();
      // Upgraded WebSockets and CONNECT tunnels are sessions, not operations: drain does not wait
      // for them; close() cuts them.
    },
    async close() {
      const servers = [...allServers];
      for (const s of servers) s.closeAllConnections();
      for (const t of tunnels) t.destroy();
      for (const s of agentSockets) s.destroy();
      await Promise.all(servers.map(closeServer));
      for (const s of servers) s.closeAllConnections();
      bound.clear();
      allServers.clear();
      pool.close();
    },
  };
}
