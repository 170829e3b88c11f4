// Forwards an authorized request: credential swapped in, path rewritten to the normalized form the
// policy judged, body limited (or buffered and masked), response relayed by response.ts. Every
// outcome ends in exactly one audit event.
//
// Plain requests go out with node's own `http.request` on the connection's keep-alive agent, not
// through http-proxy-3: its per-request option merging, URL re-parsing of the path, pass chain and
// event fan-out cost more than the rest of the guard together, and the guard already does
// everything it would add (headers, path, timeouts, error mapping). http-proxy-3 still serves
// WebSocket upgrades (websocket.ts), where it earns its keep.
import type { ClientRequest, IncomingMessage, RequestOptions, ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { binaryBodiesAllowed } from "../../decisions/http.ts";
import { type Masker, MaskingError } from "../../masking/index.ts";
import type { CompiledConnection } from "../../policy/compile.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { request as httpRequest } from "../../runtime/node-http.ts";
import { createSseAnswerFilter, inspectJsonAnswer } from "../mcp/answers.ts";
import { postToServer } from "../mcp/server-reply.ts";
import type { Authorized } from "./authorize.ts";
import {
  BodyDecodeError,
  BodyTooLargeError,
  byteLimiter,
  DEFAULT_MAX_BODY_BYTES,
  maskBody,
  readAll,
} from "./body.ts";
import { classify, decoders, looksBinary, upstreamAcceptEncoding } from "./content.ts";
import {
  CredentialError,
  credentialHeadersToDrop,
  type InjectedCredential,
  resolveCredential,
} from "./credentials.ts";
import { type Exchange, emitAudit, recordMasked } from "./exchange.ts";
import { declaredLength, downstreamResponseHeaders, isChunked, upstreamRequestHeaders } from "./headers.ts";
import { maskHeaderValues, maskQuery } from "./mask-headers.ts";
import { countByDetector, type MaskerCache } from "./masking.ts";
import { type ErrorBody, sendJson } from "./respond.ts";
import { type RelayOptions, relayResponse } from "./response.ts";
import type { Upstream, UpstreamPool } from "./upstream.ts";
import { classifyUpstreamError } from "./upstream-errors.ts";

export interface ForwardDeps {
  ctx: SidecarContext;
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
  timedOut: boolean;
  /** An answer (response or refusal) went to the agent. */
  settled: boolean;
}

// Methods for which node sends no chunked body by default (and DELETE/OPTIONS without a body get
// Content-Length: 0): a chunked body on these is buffered and sent with a length, so that nothing
// is smuggled past the upstream's framing.
const NO_DEFAULT_CHUNKING = new Set(["GET", "HEAD", "DELETE", "OPTIONS", "TRACE"]);

function connectTimeoutError(): Error {
  return Object.assign(new Error("upstream connect timed out"), { code: "ECONNECT_TIMEOUT" });
}

/** Destroys a socket that is still connecting after `ms` (reused keep-alive sockets are left alone). */
function armConnectTimeout(socket: Socket, ms: number): void {
  if (!ms || !socket.connecting) return;
  const timer = setTimeout(() => socket.destroy(connectTimeoutError()), ms);
  timer.unref();
  const clear = () => {
    clearTimeout(timer);
    socket.off("connect", clear);
    socket.off("close", clear);
  };
  socket.once("connect", clear);
  socket.once("close", clear);
}

export interface Forwarder {
  web(req: IncomingMessage, res: ServerResponse, authorized: Authorized): Promise<void>;
}

// Headers dropped from the agent's request, per connection spec (specs are replaced on policy swaps).
const dropLists = new WeakMap<CompiledConnection["spec"], readonly string[]>();

/** Upstream, credential and drop list for an authorized exchange; refuses and returns undefined on failure. */
export async function prepareUpstream(
  deps: Pick<ForwardDeps, "ctx" | "pool">,
  ex: Exchange,
  connection: CompiledConnection,
  refuse: (status: number, body: ErrorBody) => void,
): Promise<
  { upstream: Upstream; credential: InjectedCredential | undefined; drop: readonly string[] } | undefined
> {
  const { ctx } = deps;
  const fail = (
    error: string,
    reason: string,
    status = 502,
    why = "the sidecar cannot reach this connection's upstream as configured",
  ) => {
    ctx.metrics.upstreamErrors.inc({ connection: ex.connection, protocol: "http", reason });
    ex.upstream = { error };
    emitAudit(ctx, ex);
    refuse(status, { error, reason: why });
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
    credential = await resolveCredential(ctx.credentials, connection.spec, ex.session);
  } catch (err) {
    ctx.logger.error(
      { connection: ex.connection, err: err instanceof Error ? err.message : String(err) },
      "upstream credential unavailable",
    );
    if (err instanceof CredentialError && err.status === 503)
      fail(
        err.code,
        "credential",
        503,
        "the credential source (Vault) cannot provide this connection's credential now",
      );
    else fail("credential_unavailable", "credential");
    return undefined;
  }
  let drop = dropLists.get(connection.spec);
  if (drop === undefined) {
    drop = Object.freeze(credentialHeadersToDrop(connection.spec));
    dropLists.set(connection.spec, drop);
  }
  return { upstream, credential, drop };
}

export function createForwarder(deps: ForwardDeps): Forwarder {
  const { ctx, maskers } = deps;

  const refuseOnce = (f: InFlight, res: ServerResponse, status: number, body: ErrorBody, close = false) => {
    if (f.settled) return;
    f.settled = true;
    emitAudit(ctx, f.ex);
    sendJson(res, status, body, { close, format: f.connection.spec.errorFormat });
  };

  /** The upstream request failed before its response was relayed. */
  const failed = (f: InFlight, res: ServerResponse, err: unknown) => {
    if (f.settled) return;
    const { ex } = f;
    if (res.destroyed) {
      // The agent went away first and its request to the upstream was cut.
      f.settled = true;
      ex.upstream = { error: "agent_disconnected" };
      emitAudit(ctx, ex);
      return;
    }
    const failure = classifyUpstreamError(err, f.timedOut);
    ctx.metrics.upstreamErrors.inc({ connection: ex.connection, protocol: "http", reason: failure.reason });
    ctx.logger.warn({ connection: ex.connection, upstreamError: failure.detail }, "upstream request failed");
    ex.upstream = { error: failure.detail };
    refuseOnce(f, res, failure.status, {
      error: failure.status === 504 ? "upstream_timeout" : "upstream_unavailable",
      reason: failure.detail,
    });
  };

  /** Reads the response whole, rewrites it (then masks it), and sends it with its own length. */
  async function relayRewritten(
    f: InFlight,
    res: ServerResponse,
    proxyRes: IncomingMessage,
    rewrite: (body: Buffer) => Buffer,
  ): Promise<void> {
    const { ex } = f;
    const status = proxyRes.statusCode ?? 502;
    const fail = (error: string, reason: string) => {
      proxyRes.destroy();
      ex.upstream = { status, error };
      f.settled = false;
      refuseOnce(f, res, 502, { error, reason });
    };
    const decs = decoders(proxyRes.headers["content-encoding"]);
    if (!decs)
      return fail("unsupported_content_encoding", "the server's answer cannot be decoded to be filtered");
    let body: Buffer;
    try {
      body = await readAll(proxyRes, decs, f.maxResponseBytes);
    } catch (err) {
      if (err instanceof BodyTooLargeError)
        return fail(
          "response_body_too_large",
          `responses to filter are limited to ${f.maxResponseBytes} bytes`,
        );
      return fail("undecodable_response_body", "the server's answer could not be read whole");
    }
    const type = String(proxyRes.headers["content-type"] ?? "");
    if (status >= 200 && status < 300) {
      try {
        body = rewrite(body);
      } catch (err) {
        return fail("unfilterable_response", err instanceof Error ? err.message : "cannot filter the answer");
      }
    }
    if (f.responseMasker) {
      try {
        const masked = maskBody(
          f.responseMasker,
          type.startsWith("application/json") ? "json" : "text",
          body,
        );
        recordMasked(ctx, ex, countByDetector(masked.findings));
        body = masked.body;
      } catch (err) {
        if (!(err instanceof MaskingError)) throw err;
        return fail("unmaskable_response_body", "the server's answer cannot be masked");
      }
    }
    const headers = downstreamResponseHeaders(proxyRes.headers);
    delete headers["content-encoding"];
    delete headers["transfer-encoding"];
    headers["content-length"] = String(body.length);
    ex.upstream = { status };
    emitAudit(ctx, ex);
    if (res.destroyed) return;
    res.writeHead(status, headers);
    res.end(body);
  }

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
      sendJson(
        res,
        500,
        {
          error: "masking_unavailable",
          reason: "this connection's masking rules are unusable, so nothing is forwarded",
        },
        { format: spec.errorFormat },
      );
      return;
    }
    const prepared = await prepareUpstream(deps, ex, connection, (status, body) =>
      sendJson(res, status, body, { format: spec.errorFormat }),
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
      timedOut: false,
      settled: false,
    };
    const maxRequest = spec.limits?.maxRequestBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    const tooLarge = () => {
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

    // Request body: none, streamed under a byte limit, or read whole when it must be masked or reframed.
    const requestMasker = requestSlot.masker;
    // Request masking covers what travels beside the body too: header values and the query, before
    // the sidecar's own credential and user assertion go in (those are never masked).
    const agentHeaders = requestMasker ? { ...req.headers } : req.headers;
    let target = forwardTarget;
    if (requestMasker) {
      const q = target.indexOf("?");
      if (q >= 0) {
        const masked = maskQuery(requestMasker, target.slice(q));
        recordMasked(ctx, ex, countByDetector(masked.findings));
        target = target.slice(0, q) + masked.query;
      }
      recordMasked(ctx, ex, countByDetector(maskHeaderValues(requestMasker, agentHeaders)));
    }
    const headers = upstreamRequestHeaders(agentHeaders, {
      host: upstream.hostHeader,
      drop,
      inject: credential,
      websocket: false,
      acceptEncoding: f.responseMasker ? upstreamAcceptEncoding(req.headers["accept-encoding"]) : undefined,
      user: spec.userHeader ? { header: spec.userHeader, name: authorized.subject.user } : undefined,
    });
    const chunked = isChunked(req.headers);
    const hasBody = chunked || (declaredLength(req.headers) ?? 0) > 0;
    const kind = classify(req.headers["content-type"]);
    // Judged by its bytes, not its declared type: any body on a connection with request masking is
    // read whole and masked if it is text, refused if it is not (unless the rule allows binary).
    const maskRequest = hasBody && requestMasker !== undefined;
    /** A whole request body masked (findings recorded), or undefined when it was refused (422). */
    const maskWhole = (masker: Masker, as: "json" | "text", body: Buffer): Buffer | undefined => {
      try {
        const masked = maskBody(masker, as, body);
        recordMasked(ctx, ex, countByDetector(masked.findings));
        return masked.body;
      } catch (err) {
        if (!(err instanceof MaskingError)) throw err;
        ex.upstream = { error: "unmaskable_request_body" };
        refuseOnce(f, res, 422, {
          error: "unmaskable_request_body",
          reason: "the request body must be masked and cannot be (JSON nested too deeply)",
        });
        return undefined;
      }
    };
    let whole: Buffer | undefined;
    if (authorized.body !== undefined) {
      // Read (and decoded) whole while authorizing (MCP); masked here like any whole body.
      whole = authorized.body;
      delete headers["content-encoding"];
      if (requestMasker) {
        const masked = maskWhole(requestMasker, "json", whole);
        if (!masked) return;
        whole = masked;
      }
      headers["content-length"] = String(whole.length);
    } else if (maskRequest || (chunked && NO_DEFAULT_CHUNKING.has(method))) {
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
      if (maskRequest && requestMasker && looksBinary(whole)) {
        if (!binaryBodiesAllowed(connection, ex.decision?.rule)) {
          ex.upstream = { error: "binary_request_body" };
          refuseOnce(
            f,
            res,
            415,
            {
              error: "binary_request_body",
              reason:
                "this connection masks request bodies and this one is not text, so it cannot be masked; a rule with match.http.binaryBodies: true lets such bodies through",
            },
            true,
          );
          return;
        }
        // Allowed unmasked; `whole` was decoded, so it goes out without its Content-Encoding.
        if (decs.length > 0) delete headers["content-encoding"];
      } else if (maskRequest && requestMasker) {
        // JSON when it parses (whatever the label says), text otherwise.
        const masked = maskWhole(requestMasker, kind === "text" ? "text" : "json", whole);
        if (!masked) return;
        whole = masked;
        if (decs.length > 0) delete headers["content-encoding"];
      }
      headers["content-length"] = String(whole.length);
    } else if (!hasBody && (method === "DELETE" || method === "OPTIONS") && !headers["content-length"]) {
      headers["content-length"] = "0";
    }
    if (res.destroyed) return;

    const options: RequestOptions & { rejectUnauthorized?: boolean } = {
      host: upstream.host,
      port: upstream.port,
      method: req.method ?? "GET",
      path: target,
      headers,
      agent: upstream.agent,
    };
    // TLS settings (CA, SNI, name check) live on the connection's agent; verification is never off.
    if (upstream.protocol === "https:") options.rejectUnauthorized = true;
    f.startedUpstream = performance.now();
    const proxyReq = upstream.protocol === "https:" ? httpsRequest(options) : httpRequest(options);
    f.proxyReq = proxyReq;
    proxyReq.once("socket", (socket: Socket) => armConnectTimeout(socket, deps.connectTimeoutMs));
    proxyReq.setTimeout(deps.upstreamTimeoutMs, () => {
      f.timedOut = true;
      proxyReq.destroy();
    });
    const onError = (err: NodeJS.ErrnoException) => {
      // The agent's own connection reset: nothing to answer; the guard's close handler audits it.
      if (req.socket.destroyed && err.code === "ECONNRESET") {
        proxyReq.destroy();
        return;
      }
      failed(f, res, err);
    };
    proxyReq.on("error", onError);
    req.on("error", onError);
    // The agent left before the whole answer went out: cut the upstream request too.
    res.once("close", () => {
      if (!res.writableFinished) proxyReq.destroy();
    });
    proxyReq.once("response", (proxyRes: IncomingMessage) => {
      if (f.settled) {
        proxyRes.destroy();
        return;
      }
      f.settled = true;
      ctx.metrics.upstreamSeconds.observe(
        { connection: ex.connection, protocol: "http" },
        (performance.now() - f.startedUpstream) / 1000,
      );
      authorized.onResponseHeaders?.(proxyRes.headers);
      const relay: RelayOptions = {
        masker: f.responseMasker,
        maxBodyBytes: f.maxResponseBytes,
        method,
        errorFormat: spec.errorFormat,
      };
      const status = proxyRes.statusCode ?? 502;
      if (authorized.mcpAnswer && status >= 200 && status < 300 && status !== 202 && status !== 204) {
        // MCP: nothing the server sends reaches the agent without being read as JSON-RPC.
        const issued = proxyRes.headers["mcp-session-id"];
        const session = typeof issued === "string" ? issued : undefined;
        const reply = { upstream, path: target, headers, timeoutMs: deps.upstreamTimeoutMs };
        const inspect = authorized.mcpAnswer((message) =>
          postToServer({ ...reply, logger: ctx.logger, connection: ex.connection }, session, message),
        );
        const type = String(proxyRes.headers["content-type"] ?? "").toLowerCase();
        // The order SDK clients look at the type in: a stream first, then JSON.
        if (type.includes("text/event-stream"))
          relayResponse(ctx, ex, res, proxyRes, {
            ...relay,
            sseFilter: createSseAnswerFilter(inspect, f.maxResponseBytes),
          });
        else if (type.includes("application/json"))
          void relayRewritten(f, res, proxyRes, (b) => inspectJsonAnswer(b, inspect));
        else if (!type && (method === "DELETE" || proxyRes.headers["content-length"] === "0"))
          // A session end's answer (or any empty one) carries no message: relayed only while empty.
          void relayRewritten(f, res, proxyRes, (b) => {
            if (b.length > 0) throw new Error("the MCP server's answer has a body but no content type");
            return b;
          });
        else {
          proxyRes.destroy();
          ex.upstream = { status, error: "unreadable_mcp_answer" };
          f.settled = false;
          refuseOnce(f, res, 502, {
            error: "unreadable_mcp_answer",
            reason: `the MCP server answered as ${type || "no content type"}, neither JSON nor an event stream`,
          });
        }
        return;
      }
      relayResponse(ctx, ex, res, proxyRes, relay);
    });
    if (whole !== undefined) proxyReq.end(whole);
    else if (hasBody) req.pipe(byteLimiter(maxRequest, tooLarge)).pipe(proxyReq);
    else proxyReq.end();
  }

  return { web };
}
