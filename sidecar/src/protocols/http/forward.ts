// Forwards an authorized request with http-proxy-3: credential swapped in, path rewritten to the
// normalized form the policy judged, body limited (or buffered and masked), response relayed by
// response.ts. Every outcome ends in exactly one audit event.
import type { ClientRequest, IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { Readable } from "node:stream";
import type { ProxyServer } from "http-proxy-3";
import { type Masker, MaskingError } from "../../masking/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import type { Authorized } from "./authorize.ts";
import {
  BodyDecodeError,
  BodyTooLargeError,
  byteLimiter,
  DEFAULT_MAX_BODY_BYTES,
  maskBody,
  readAll,
} from "./body.ts";
import { classify, decoders, upstreamAcceptEncoding } from "./content.ts";
import { credentialHeadersToDrop, type InjectedCredential, resolveCredential } from "./credentials.ts";
import { type Exchange, emitAudit, recordMasked } from "./exchange.ts";
import { declaredLength, isChunked, upstreamRequestHeaders } from "./headers.ts";
import { countByDetector, type MaskerCache } from "./masking.ts";
import { type ErrorBody, sendJson } from "./respond.ts";
import { relayResponse } from "./response.ts";
import type { Upstream, UpstreamPool } from "./upstream.ts";
import { classifyUpstreamError } from "./upstream-errors.ts";

export interface ForwardDeps {
  ctx: SidecarContext;
  proxy: ProxyServer;
  pool: UpstreamPool;
  maskers: MaskerCache;
  /** Idle time allowed on the upstream socket (ms). */
  upstreamTimeoutMs: number;
  connectTimeoutMs: number;
}

interface InFlight {
  ex: Exchange;
  connection: CompiledConnection;
  method: string;
  responseMasker: Masker | undefined;
  maxResponseBytes: number;
  startedUpstream: number;
  proxyReq?: ClientRequest;
  /** Set when the request is cut (body limit): a late proxyReq is destroyed on sight. */
  aborted: boolean;
  timedOut: boolean;
  /** An answer (response or refusal) went to the agent. */
  settled: boolean;
}

// Methods for which node sends no chunked body by default (and http-proxy-3 forces
// Content-Length: 0 on DELETE/OPTIONS): a chunked body on these is buffered and sent with a length,
// so that nothing is smuggled past the upstream's framing.
const NO_DEFAULT_CHUNKING = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"]);

export interface Forwarder {
  web(req: IncomingMessage, res: ServerResponse, authorized: Authorized): Promise<void>;
}

/** Upstream, credential and drop list for an authorized exchange; refuses and returns undefined on failure. */
export async function prepareUpstream(
  deps: Pick<ForwardDeps, "ctx" | "pool">,
  ex: Exchange,
  connection: CompiledConnection,
  refuse: (status: number, body: ErrorBody) => void,
): Promise<{ upstream: Upstream; credential: InjectedCredential | undefined; drop: string[] } | undefined> {
  const { ctx } = deps;
  const fail = (error: string, reason: string) => {
    ctx.metrics.upstreamErrors.inc({ connection: ex.connection, protocol: "http", reason });
    ex.upstream = { error };
    emitAudit(ctx, ex);
    refuse(502, { error, reason: "the sidecar cannot reach this connection's upstream as configured" });
  };
  let upstream: Upstream;
  try {
    upstream = await deps.pool.get(connection);
  } catch (err) {
    ctx.logger.error(
      { connection: ex.connection, err: err instanceof Error ? err.message : String(err) },
      "upstream TLS configuration unusable",
    );
    fail("upstream_misconfigured", "config");
    return undefined;
  }
  let credential: InjectedCredential | undefined;
  try {
    credential = await resolveCredential(ctx.secrets, connection.spec);
  } catch (err) {
    ctx.logger.error(
      { connection: ex.connection, err: err instanceof Error ? err.message : String(err) },
      "upstream credential unavailable",
    );
    fail("credential_unavailable", "credential");
    return undefined;
  }
  return { upstream, credential, drop: credentialHeadersToDrop(connection.spec) };
}

export function createForwarder(deps: ForwardDeps): Forwarder {
  const { ctx, proxy, maskers } = deps;
  const inflight = new WeakMap<IncomingMessage, InFlight>();

  proxy.on("proxyReq", (proxyReq, req) => {
    const f = inflight.get(req);
    if (!f) return;
    f.proxyReq = proxyReq;
    proxyReq.once("timeout", () => {
      f.timedOut = true;
    });
    if (f.aborted) proxyReq.destroy();
  });

  proxy.on("proxyRes", (proxyRes, req, res) => {
    const f = inflight.get(req);
    if (!f || f.settled) {
      proxyRes.destroy();
      return;
    }
    f.settled = true;
    ctx.metrics.upstreamSeconds.observe(
      { connection: f.ex.connection, protocol: "http" },
      (performance.now() - f.startedUpstream) / 1000,
    );
    relayResponse(ctx, f.ex, res, proxyRes, {
      masker: f.responseMasker,
      maxBodyBytes: f.maxResponseBytes,
      method: f.method,
    });
  });

  const refuseOnce = (f: InFlight, res: ServerResponse, status: number, body: ErrorBody, close = false) => {
    if (f.settled) return;
    f.settled = true;
    emitAudit(ctx, f.ex);
    sendJson(res, status, body, { close });
  };

  async function web(req: IncomingMessage, res: ServerResponse, authorized: Authorized): Promise<void> {
    const { ex, connection, forwardTarget } = authorized;
    const spec = connection.spec;
    const method = (req.method ?? "GET").toUpperCase();
    const requestSlot = maskers.get(connection, "request");
    const responseSlot = maskers.get(connection, "response");
    if ("error" in requestSlot || "error" in responseSlot) {
      ctx.logger.error({ connection: spec.name }, "masking rules for this connection do not compile");
      ex.upstream = { error: "masking_unavailable" };
      emitAudit(ctx, ex);
      sendJson(res, 500, {
        error: "masking_unavailable",
        reason: "this connection's masking rules are unusable, so nothing is forwarded",
      });
      return;
    }
    const prepared = await prepareUpstream(deps, ex, connection, (status, body) =>
      sendJson(res, status, body),
    );
    if (!prepared) return;
    if (res.destroyed) return; // the agent left while waiting (e.g. for approval); the guard audited it
    const { upstream, credential, drop } = prepared;

    const f: InFlight = {
      ex,
      connection,
      method,
      responseMasker: responseSlot.masker,
      maxResponseBytes: spec.limits?.maxResponseBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
      startedUpstream: 0,
      aborted: false,
      timedOut: false,
      settled: false,
    };
    const maxRequest = spec.limits?.maxRequestBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    const tooLarge = () => {
      f.aborted = true;
      f.proxyReq?.destroy();
      req.unpipe();
      ex.upstream = { error: "request_body_too_large" };
      refuseOnce(
        f,
        res,
        413,
        {
          error: "request_body_too_large",
          limit: maxRequest,
          reason: `request bodies are limited to ${maxRequest} bytes`,
        },
        true,
      );
      if (res.headersSent && !res.writableFinished) res.destroy();
    };

    // Request body: streamed under a byte limit, or read whole when it must be masked or reframed.
    const headers = upstreamRequestHeaders(req.headers, {
      host: upstream.hostHeader,
      drop,
      inject: credential,
      websocket: false,
      acceptEncoding: f.responseMasker ? upstreamAcceptEncoding(req.headers["accept-encoding"]) : undefined,
    });
    const chunked = isChunked(req.headers);
    const hasBody = chunked || (declaredLength(req.headers) ?? 0) > 0;
    const requestMasker = requestSlot.masker;
    const kind = classify(req.headers["content-type"]);
    const maskRequest = hasBody && requestMasker !== undefined && kind !== "other";
    let body: Readable;
    if (maskRequest || (chunked && NO_DEFAULT_CHUNKING.has(method))) {
      const decs = maskRequest ? decoders(req.headers["content-encoding"]) : [];
      if (!decs) {
        ex.upstream = { error: "unsupported_content_encoding" };
        refuseOnce(
          f,
          res,
          415,
          {
            error: "unsupported_content_encoding",
            reason: "the request body must be masked and its Content-Encoding cannot be decoded",
          },
          true,
        );
        return;
      }
      let whole: Buffer;
      try {
        whole = await readAll(req, decs, maxRequest);
      } catch (err) {
        if (err instanceof BodyTooLargeError) tooLarge();
        else if (err instanceof BodyDecodeError) {
          ex.upstream = { error: "undecodable_request_body" };
          refuseOnce(
            f,
            res,
            400,
            { error: "undecodable_request_body", reason: "cannot decode the request body" },
            true,
          );
        }
        // Otherwise the agent aborted the body; the guard's close handler audits that.
        return;
      }
      if (maskRequest && requestMasker) {
        try {
          const masked = maskBody(requestMasker, kind === "json" ? "json" : "text", whole);
          recordMasked(ctx, ex, countByDetector(masked.findings));
          whole = masked.body;
        } catch (err) {
          if (!(err instanceof MaskingError)) throw err;
          ex.upstream = { error: "unmaskable_request_body" };
          refuseOnce(f, res, 422, {
            error: "unmaskable_request_body",
            reason: "the request body must be masked and cannot be (JSON nested too deeply)",
          });
          return;
        }
        if (decs.length > 0) delete headers["content-encoding"];
      }
      headers["content-length"] = String(whole.length);
      body = Readable.from([whole]);
    } else {
      body = req.pipe(byteLimiter(maxRequest, tooLarge));
    }
    if (res.destroyed) return;

    req.headers = headers;
    req.url = forwardTarget;
    inflight.set(req, f);
    f.startedUpstream = performance.now();
    proxy.web(
      req,
      res,
      {
        target: { protocol: upstream.protocol, host: upstream.host, port: upstream.port },
        agent: upstream.agent,
        secure: true,
        selfHandleResponse: true,
        buffer: body,
        proxyTimeout: deps.upstreamTimeoutMs,
        connectTimeout: deps.connectTimeoutMs,
      },
      (err) => {
        if (f.settled) return;
        if (res.destroyed) {
          // The agent went away first; http-proxy-3 then cut the upstream request.
          f.settled = true;
          ex.upstream = { error: "agent_disconnected" };
          emitAudit(ctx, ex);
          return;
        }
        const failure = classifyUpstreamError(err, f.timedOut);
        ctx.metrics.upstreamErrors.inc({
          connection: ex.connection,
          protocol: "http",
          reason: failure.reason,
        });
        ctx.logger.warn(
          { connection: ex.connection, upstreamError: failure.detail },
          "upstream request failed",
        );
        ex.upstream = { error: failure.detail };
        refuseOnce(f, res, failure.status, {
          error: failure.status === 504 ? "upstream_timeout" : "upstream_unavailable",
          reason: failure.detail,
        });
      },
    );
  }

  return { web };
}
