// WebSocket upgrades. The policy engine already requires a rule with `websocket: true` for an
// upgrade operation; refusals are written on the raw socket. The credential is injected into the
// upgrade request; frames are not inspected (audit records the upgrade only), so on a connection
// with masking rules (either direction) the upgrade is refused: frames would carry unmasked values.
import type { IncomingMessage } from "node:http";
import { performance } from "node:perf_hooks";
import type { Duplex } from "node:stream";
import type { ProxyServer } from "http-proxy-3";
import type { Authorized } from "./authorize.ts";
import type { Exchange } from "./exchange.ts";
import { type ForwardDeps, prepareUpstream } from "./forward.ts";
import { upstreamRequestHeaders } from "./headers.ts";
import { writeSocketJson } from "./respond.ts";
import { classifyUpstreamError } from "./upstream-errors.ts";

interface WsFlight {
  ex: Exchange;
  started: number;
}

export interface WebSocketForwarder {
  ws(req: IncomingMessage, socket: Duplex, head: Buffer, authorized: Authorized): Promise<void>;
}

/** `Upgrade: websocket` (any case), the only upgrade the guard forwards. */
export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return (req.headers.upgrade ?? "").trim().toLowerCase() === "websocket";
}

export function createWebSocketForwarder(deps: ForwardDeps & { proxy: ProxyServer }): WebSocketForwarder {
  const { ctx, proxy } = deps;
  const inflight = new WeakMap<IncomingMessage, WsFlight>();

  // Runs before http-proxy-3 registers its own 'upgrade'/'response' listeners on the upstream
  // request, so the audit event is emitted before the 101 (or the refusal) reaches the agent.
  proxy.on("proxyReqWs", (proxyReq, req) => {
    const f = inflight.get(req);
    if (!f) return;
    const settle = (status: number) => {
      if (f.ex.finished) return;
      f.ex.upstream = { status };
      ctx.metrics.upstreamSeconds.observe(
        { connection: f.ex.connection, protocol: "http" },
        (performance.now() - f.started) / 1000,
      );
      f.ex.finish();
    };
    proxyReq.once("upgrade", (res: IncomingMessage) => settle(res.statusCode ?? 101));
    proxyReq.once("response", (res: IncomingMessage) => settle(res.statusCode ?? 502));
  });

  return {
    async ws(req, socket, head, authorized) {
      const { ex, connection, forwardTarget } = authorized;
      const prepared = await prepareUpstream(deps, ex, connection, (status, body) =>
        writeSocketJson(socket, status, body, connection.spec.errorFormat),
      );
      if (!prepared) return;
      const { upstream, credential, drop } = prepared;
      if (socket.destroyed) {
        ex.end("agent_disconnected");
        return;
      }
      const f: WsFlight = { ex, started: performance.now() };
      req.headers = upstreamRequestHeaders(req.headers, {
        host: upstream.hostHeader,
        drop,
        inject: credential,
        websocket: true,
        user: connection.spec.userHeader
          ? { header: connection.spec.userHeader, name: authorized.subject.user }
          : undefined,
      });
      req.url = forwardTarget;
      inflight.set(req, f);
      proxy.ws(
        req,
        socket,
        head,
        {
          target: { protocol: upstream.protocol, host: upstream.host, port: upstream.port },
          agent: upstream.agent,
          secure: true,
          connectTimeout: deps.connectTimeoutMs,
        },
        (err) => {
          if (ex.finished) return;
          const failure = classifyUpstreamError(err);
          ctx.metrics.upstreamErrors.inc({
            connection: ex.connection,
            protocol: "http",
            reason: failure.reason,
          });
          ex.upstream = { error: failure.detail };
          ex.finish();
          writeSocketJson(
            socket,
            failure.status,
            { error: "upstream_unavailable", reason: failure.detail },
            connection.spec.errorFormat,
          );
        },
      );
    },
  };
}
