// Relays the upstream response to the agent, masking it when the connection has response masking
// rules: header values always; bodies by what their bytes are, not what they are labelled. JSON
// and text bodies are decoded, buffered (up to limits.maxResponseBodyBytes), masked and sent with
// a fresh Content-Length; a body labelled binary or not at all is sniffed (its first chunk, or the
// whole decoded body when it is encoded) and masked as text when it is text; bytes that are not
// text (images, archives) cannot carry a maskable value as text and pass. Server-sent events are
// decoded and masked while streaming (event by event, with LLM text deltas reassembled:
// sse-stream.ts). Bodies the sidecar cannot mask are refused (502), never passed on unmasked.
//
// Audit timing: buffered and passthrough responses are audited before the status line goes out;
// a masked SSE stream is audited at its end, before its last chunk is released, so the event
// carries the complete masked counts (a stream cut short is audited when it is cut).
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import type { ErrorFormat } from "../../../../api/src/index.ts";
import { type Masker, MaskingError } from "../../masking/index.ts";
import type { SidecarContext } from "../../runtime/context.ts";
import { type SseAnswerFilter, UnreadableAnswer } from "../mcp/answers.ts";
import { BodyDecodeError, BodyTooLargeError, maskBody, readAll } from "./body.ts";
import { classify, decoders, looksBinary } from "./content.ts";
import { type Exchange, emitAudit, recordMasked } from "./exchange.ts";
import { downstreamResponseHeaders } from "./headers.ts";
import { maskHeaderValues } from "./mask-headers.ts";
import { countByDetector } from "./masking.ts";
import { sendJson } from "./respond.ts";
import { createSseMasker } from "./sse-stream.ts";

export interface RelayOptions {
  /** Response masker for this connection, when response masking rules apply. */
  masker: Masker | undefined;
  maxBodyBytes: number;
  /** The request method (HEAD responses have no body). */
  method: string;
  /** The connection's `errorFormat`, for the sidecar's own refusals of a response. */
  errorFormat?: ErrorFormat | undefined;
  /** MCP: an event stream is read event by event through this before masking (mcp/answers.ts). */
  sseFilter?: SseAnswerFilter;
}

// Integrity headers describe the upstream's bytes, not the masked ones.
const DIGEST_HEADERS = ["content-md5", "digest", "content-digest", "repr-digest"];

function hasNoBody(method: string, status: number): boolean {
  return method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200);
}

/** Response headers for the agent, their values masked when a masker applies. */
function agentHeaders(
  ctx: SidecarContext,
  ex: Exchange,
  upstream: IncomingMessage,
  masker: Masker | undefined,
) {
  const headers = downstreamResponseHeaders(upstream.headers);
  if (masker) recordMasked(ctx, ex, countByDetector(maskHeaderValues(masker, headers)));
  return headers;
}

function maskedHeaders(
  ctx: SidecarContext,
  ex: Exchange,
  upstream: IncomingMessage,
  masker: Masker | undefined,
) {
  const headers = agentHeaders(ctx, ex, upstream, masker);
  delete headers["content-encoding"];
  delete headers["content-length"];
  for (const h of DIGEST_HEADERS) delete headers[h];
  return headers;
}

function refuse(
  ctx: SidecarContext,
  ex: Exchange,
  res: ServerResponse,
  upstream: Readable,
  error: string,
  format: ErrorFormat | undefined,
) {
  upstream.destroy();
  ex.upstream = { ...ex.upstream, error };
  ctx.metrics.upstreamErrors.inc({ connection: ex.connection, protocol: "http", reason: error });
  emitAudit(ctx, ex);
  sendJson(
    res,
    502,
    { error, reason: "the sidecar must mask this response and could not; it is not passed on unmasked" },
    { format },
  );
}

export function relayResponse(
  ctx: SidecarContext,
  ex: Exchange,
  res: ServerResponse,
  upstream: IncomingMessage,
  opts: RelayOptions,
): void {
  const status = upstream.statusCode ?? 502;
  ex.upstream = { status };
  const kind = classify(upstream.headers["content-type"]);
  if (opts.sseFilter && !hasNoBody(opts.method, status)) {
    const decs = decoders(upstream.headers["content-encoding"]);
    if (!decs) refuse(ctx, ex, res, upstream, "unsupported_content_encoding", opts.errorFormat);
    else streamSse(ctx, ex, res, upstream, status, opts.masker, decs, opts.sseFilter);
    return;
  }
  if (!opts.masker || hasNoBody(opts.method, status)) {
    passthrough(ctx, ex, res, upstream, status, opts.masker);
    return;
  }
  const decs = decoders(upstream.headers["content-encoding"]);
  if (!decs) {
    refuse(ctx, ex, res, upstream, "unsupported_content_encoding", opts.errorFormat);
    return;
  }
  const masking = { ...opts, masker: opts.masker };
  if (kind === "sse") streamSse(ctx, ex, res, upstream, status, opts.masker, decs);
  else if (kind !== "other") void bufferAndMask(ctx, ex, res, upstream, status, masking, kind, decs);
  else if (decs.length > 0) void bufferAndMask(ctx, ex, res, upstream, status, masking, "json", decs);
  else sniff(ctx, ex, res, upstream, status, masking);
}

/**
 * A body labelled binary or not at all, unencoded: its first chunk decides. Text is buffered and
 * masked (JSON when it parses); anything else streams through as it came.
 */
function sniff(
  ctx: SidecarContext,
  ex: Exchange,
  res: ServerResponse,
  upstream: IncomingMessage,
  status: number,
  opts: RelayOptions & { masker: Masker },
) {
  const onEnd = () => {
    upstream.off("data", onData);
    passthrough(ctx, ex, res, upstream, status, opts.masker);
  };
  const onData = (chunk: Buffer) => {
    upstream.pause();
    upstream.off("data", onData);
    upstream.off("end", onEnd);
    upstream.unshift(chunk);
    if (looksBinary(chunk, true)) passthrough(ctx, ex, res, upstream, status, opts.masker);
    else {
      // readAll attaches its listeners synchronously; an explicitly paused stream needs a resume.
      void bufferAndMask(ctx, ex, res, upstream, status, opts, "json", []);
      upstream.resume();
    }
  };
  upstream.on("data", onData);
  upstream.once("end", onEnd);
}

function passthrough(
  ctx: SidecarContext,
  ex: Exchange,
  res: ServerResponse,
  upstream: IncomingMessage,
  status: number,
  masker: Masker | undefined,
) {
  const headers = agentHeaders(ctx, ex, upstream, masker);
  emitAudit(ctx, ex);
  res.writeHead(status, upstream.statusMessage, headers);
  // The event went out with the head; an upstream that dies after it is counted and logged.
  relay(upstream, res, () => {
    ctx.metrics.upstreamErrors.inc({
      connection: ex.connection,
      protocol: "http",
      reason: "aborted_mid_body",
    });
    ctx.logger.warn(
      { connection: ex.connection, status },
      "upstream response cut mid-body; the agent's response is cut too",
    );
  });
}

const ignore = () => undefined;

/**
 * Streams the upstream body to the agent. Either side failing cuts the other: an upstream that dies
 * mid-body leaves the agent with a cut response (no clean end), never a silently short one. Plain
 * `pipe` plus two listeners rather than `stream.pipeline`, which allocates an AbortController and
 * constructs a DOMException (with a stack trace) for every response.
 */
function relay(upstream: IncomingMessage, res: ServerResponse, onUpstreamCut: () => void): void {
  upstream.on("error", ignore); // followed by 'close'
  upstream.once("close", () => {
    if (upstream.complete) return;
    if (!res.destroyed) onUpstreamCut(); // (not when the agent left first and cut it)
    res.destroy();
  });
  res.on("error", ignore);
  res.once("close", () => {
    if (!upstream.readableEnded) upstream.destroy();
  });
  upstream.pipe(res);
}

async function bufferAndMask(
  ctx: SidecarContext,
  ex: Exchange,
  res: ServerResponse,
  upstream: IncomingMessage,
  status: number,
  opts: RelayOptions & { masker: Masker },
  kind: "json" | "text",
  decs: NonNullable<ReturnType<typeof decoders>>,
) {
  let body: Buffer;
  try {
    body = await readAll(upstream, decs, opts.maxBodyBytes);
  } catch (err) {
    const error =
      err instanceof BodyTooLargeError
        ? "response_too_large_to_mask"
        : err instanceof BodyDecodeError
          ? "undecodable_response"
          : "upstream_aborted";
    refuse(ctx, ex, res, upstream, error, opts.errorFormat);
    return;
  }
  if (looksBinary(body)) {
    // Labelled text, or found only by sniffing the decoded bytes, but not text: nothing to mask
    // as text; it goes out decoded, byte for byte.
    const headers = maskedHeaders(ctx, ex, upstream, opts.masker);
    headers["content-length"] = body.length;
    emitAudit(ctx, ex);
    if (res.destroyed) return;
    res.writeHead(status, upstream.statusMessage, headers);
    res.end(body);
    return;
  }
  let masked: ReturnType<typeof maskBody>;
  try {
    masked = maskBody(opts.masker, kind, body);
  } catch (err) {
    if (!(err instanceof MaskingError)) ctx.logger.error({ connection: ex.connection }, "masking failed");
    refuse(ctx, ex, res, upstream, "unmaskable_response", opts.errorFormat);
    return;
  }
  recordMasked(ctx, ex, countByDetector(masked.findings));
  const headers = maskedHeaders(ctx, ex, upstream, opts.masker);
  headers["content-length"] = masked.body.length;
  emitAudit(ctx, ex);
  if (res.destroyed) return;
  res.writeHead(status, upstream.statusMessage, headers);
  res.end(masked.body);
}

function streamSse(
  ctx: SidecarContext,
  ex: Exchange,
  res: ServerResponse,
  upstream: IncomingMessage,
  status: number,
  masker: Masker | undefined,
  decs: NonNullable<ReturnType<typeof decoders>>,
  filter?: SseAnswerFilter,
) {
  const masking = masker
    ? createSseMasker(masker, (findings) => recordMasked(ctx, ex, countByDetector(findings)))
    : undefined;
  // The filter (MCP) sees the events first; masking applies to what it lets through.
  const stream = {
    push: (t: string) => {
      const kept = filter ? filter.push(t) : t;
      return masking ? masking.push(kept) : kept;
    },
    end: () => {
      const kept = filter ? filter.end() : "";
      return masking ? masking.push(kept) + masking.end() : kept;
    },
  };
  const text = new StringDecoder("utf8");
  let source: Readable = upstream;
  for (const d of decs) source = source.pipe(d);
  let finished = false;

  const fail = (error: string) => {
    if (finished) return;
    finished = true;
    upstream.destroy();
    for (const d of decs) d.destroy();
    ex.upstream = { status, error };
    ctx.metrics.upstreamErrors.inc({ connection: ex.connection, protocol: "http", reason: error });
    emitAudit(ctx, ex);
    // Headers are out: the only honest signal left is cutting the stream (no terminating chunk).
    res.destroy();
  };

  res.writeHead(status, upstream.statusMessage, maskedHeaders(ctx, ex, upstream, masker));
  res.flushHeaders();
  source.on("data", (chunk: Buffer) => {
    if (finished) return;
    let out: string;
    try {
      out = stream.push(text.write(chunk));
    } catch (err) {
      // e.g. an event nested too deeply to mask: cut, never pass
      fail(err instanceof UnreadableAnswer ? "unreadable_mcp_answer" : "unmaskable_response");
      return;
    }
    if (out !== "" && !res.write(out)) {
      source.pause();
      res.once("drain", () => source.resume());
    }
  });
  source.once("end", () => {
    if (finished) return;
    let tail: string;
    try {
      tail = stream.push(text.end()) + stream.end();
    } catch {
      fail("unmaskable_response");
      return;
    }
    finished = true;
    emitAudit(ctx, ex);
    res.end(tail);
  });
  upstream.once("error", () => fail("upstream_aborted"));
  upstream.once("aborted", () => fail("upstream_aborted"));
  for (const d of decs) d.once("error", () => fail("undecodable_response"));
  res.once("close", () => {
    if (!finished) {
      finished = true;
      upstream.destroy();
      ex.upstream = { status, error: "agent_disconnected" };
      emitAudit(ctx, ex);
    }
  });
}
