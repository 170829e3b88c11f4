// A small API-server client: JSON requests and watch streams over one keep-alive agent. The
// sidecar needs only a few calls on two kinds of its own objects, and the full client library costs
// ~90 MB of memory per pod.

import type { IncomingMessage } from "node:http";
import { Agent, request } from "node:https";
import type { KubeAccess } from "./access.ts";

/** An answer the API server gave with an error status; `message` is its Status message. */
export class KubeApiError extends Error {
  override readonly name = "KubeApiError";
  readonly status: number;
  readonly reason: string | undefined;
  constructor(status: number, message: string, reason?: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

export interface RequestOptions {
  body?: unknown;
  contentType?: string;
  query?: Record<string, string | undefined>;
  timeoutMs?: number;
}

export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

export interface KubeClient {
  request<T>(method: string, path: string, opts?: RequestOptions): Promise<T>;
  /** Streams watch events until the server ends the watch (resolves) or it fails (rejects). */
  watch<T>(
    path: string,
    query: Record<string, string | undefined>,
    onEvent: (e: WatchEvent<T>) => void,
    signal: AbortSignal,
  ): Promise<void>;
  close(): void;
}

const MAX_BODY = 64 << 20;

function withQuery(path: string, query: Record<string, string | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function readBody(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY) throw new Error(`API server response larger than ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function apiError(status: number, text: string): KubeApiError {
  try {
    const s = JSON.parse(text) as { message?: unknown; reason?: unknown };
    if (typeof s.message === "string")
      return new KubeApiError(status, s.message, typeof s.reason === "string" ? s.reason : undefined);
  } catch {
    // not a Status object
  }
  return new KubeApiError(status, text.trim().slice(0, 500) || `HTTP ${status}`);
}

export function createKubeClient(access: KubeAccess): KubeClient {
  const url = new URL(access.server);
  const agent = new Agent({
    keepAlive: true,
    ...(access.ca ? { ca: access.ca } : {}),
    ...(access.cert && access.key ? { cert: access.cert, key: access.key } : {}),
  });
  const open = (
    method: string,
    path: string,
    opts: { body?: Buffer; contentType?: string; signal?: AbortSignal; timeoutMs?: number } = {},
  ) =>
    new Promise<IncomingMessage>((resolve, reject) => {
      const token = access.token?.();
      const req = request({
        agent,
        host: url.hostname.replace(/^\[|\]$/g, ""),
        port: url.port || 443,
        method,
        path,
        headers: {
          accept: "application/json",
          ...(opts.body
            ? {
                "content-type": opts.contentType ?? "application/json",
                "content-length": String(opts.body.length),
              }
            : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
      });
      req.once("timeout", () =>
        req.destroy(new Error(`${method} ${path}: no answer within ${opts.timeoutMs} ms`)),
      );
      req.once("error", reject);
      req.once("response", resolve);
      req.end(opts.body);
    });

  return {
    async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
      const body = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
      const res = await open(method, withQuery(path, opts.query), {
        ...(body ? { body } : {}),
        ...(opts.contentType ? { contentType: opts.contentType } : {}),
        timeoutMs: opts.timeoutMs ?? 10_000,
      });
      const text = await readBody(res);
      const status = res.statusCode ?? 0;
      if (status < 200 || status >= 300) throw apiError(status, text);
      return (text ? JSON.parse(text) : {}) as T;
    },
    async watch<T>(
      path: string,
      query: Record<string, string | undefined>,
      onEvent: (e: WatchEvent<T>) => void,
      signal: AbortSignal,
    ) {
      const res = await open("GET", withQuery(path, { ...query, watch: "true" }), { signal });
      const status = res.statusCode ?? 0;
      if (status !== 200) throw apiError(status, await readBody(res));
      let buf = "";
      for await (const chunk of res as AsyncIterable<Buffer>) {
        buf += chunk.toString("utf8");
        if (buf.length > MAX_BODY) throw new Error("watch event larger than the limit");
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) onEvent(JSON.parse(line) as WatchEvent<T>);
        }
      }
    },
    close() {
      agent.destroy();
    },
  };
}
