// Test harness for the HTTP guard: a real SidecarContext (PolicyStore, file SecretStore, metrics,
// pino logger writing to a buffer, audit events both collected and logged), real upstream servers
// on 127.0.0.1 (HTTP and HTTPS with a generated CA), and a small HTTP client.

import {
  type Agent,
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  request,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { AgentAccessPolicy, AgentAccessPolicySpec } from "../../api/src/index.ts";
import type { AuditEvent } from "../../sidecar/src/audit/events.ts";
import type { CredentialSourcesOptions } from "../../sidecar/src/credentials/index.ts";
import {
  createHttpGuard,
  type HttpGuard,
  type HttpGuardOptions,
} from "../../sidecar/src/protocols/http/index.ts";
import type { SidecarContext } from "../../sidecar/src/runtime/context.ts";
import type { Metrics } from "../../sidecar/src/telemetry/metrics.ts";
import { testContext, WORKLOAD } from "../harness/context.ts";

export { WORKLOAD };

export function policy(name: string, spec: AgentAccessPolicySpec): AgentAccessPolicy {
  return {
    apiVersion: "airlock.dev/v1alpha1",
    kind: "AgentAccessPolicy",
    metadata: { name, namespace: "agents" },
    spec,
  };
}

export interface Sidecar {
  ctx: SidecarContext;
  guard: HttpGuard;
  metrics: Metrics;
  audit: AuditEvent[];
  /** Everything the pino logger wrote (JSON lines), audit events included. */
  logs(): string;
  secretsDir: string;
  /** Listens on 127.0.0.1:<free port> for the named connection; returns its base URL. */
  listen(connection: string): Promise<string>;
  listenProxy(): Promise<string>;
  setPolicies(policies: AgentAccessPolicy[]): void;
  writeSecret(name: string, key: string, value: string): Promise<void>;
  close(): Promise<void>;
}

export async function startSidecar(opts: {
  policies: AgentAccessPolicy[];
  secrets?: Record<string, Record<string, string>>;
  guard?: HttpGuardOptions;
  /** Credential source options (Vault: the projected token directory, timeouts). */
  credentials?: Partial<Pick<CredentialSourcesOptions, "tokenDir" | "vaultTimeoutMs">>;
}): Promise<Sidecar> {
  const t = await testContext({
    prefix: "http",
    policies: opts.policies,
    ...(opts.secrets ? { secrets: opts.secrets } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
  });
  const { ctx } = t;
  // Masking rules come from the compiled policy, as in the real sidecar.
  const guard = createHttpGuard(ctx, {
    upstreamTimeoutMs: 20_000,
    connectTimeoutMs: 5_000,
    ...opts.guard,
  });
  return {
    ctx,
    guard,
    metrics: t.metrics,
    audit: t.audit,
    logs: t.logs,
    secretsDir: t.secretsDir,
    async listen(name) {
      const conn = ctx.policies.current().connections.get(name);
      if (!conn) throw new Error(`no connection ${name}`);
      const { port } = await guard.listen(conn, { port: 0 });
      return `http://127.0.0.1:${port}`;
    },
    async listenProxy() {
      const { port } = await guard.listenProxy({ port: 0 });
      return `http://127.0.0.1:${port}`;
    },
    setPolicies: t.setPolicies,
    writeSecret: t.writeSecret,
    async close() {
      await guard.close();
      await t.remove();
    },
  };
}

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface Upstream {
  port: number;
  url: string;
  requests: RecordedRequest[];
  /** TCP connections accepted so far. */
  connections: number;
  server: Server;
  close(): Promise<void>;
}

export type UpstreamHandler = (
  req: IncomingMessage & { body: Buffer },
  res: ServerResponse,
) => void | Promise<void>;

/** A real upstream on 127.0.0.1; HTTPS when `tls` is given. Bodies are read before the handler runs. */
export async function startUpstream(
  handler: UpstreamHandler,
  tls?: { key: string; cert: string },
): Promise<Upstream> {
  const requests: RecordedRequest[] = [];
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      void Promise.resolve(handler(Object.assign(req, { body }), res)).catch(() => res.destroy());
    });
  };
  const server: Server = tls ? createHttpsServer(tls, listener) : createHttpServer(listener);
  const sockets = new Set<Socket>();
  const up: Upstream = {
    port: 0,
    url: "",
    requests,
    connections: 0,
    server,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on(tls ? "secureConnection" : "connection", (s: Socket) => {
    up.connections++;
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  up.port = (server.address() as AddressInfo).port;
  up.url = `${tls ? "https" : "http"}://127.0.0.1:${up.port}`;
  return up;
}

export function json(res: ServerResponse, status: number, body: unknown, headers: OutgoingHttpHeaders = {}) {
  const payload = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { "content-type": "application/json", "content-length": payload.length, ...headers });
  res.end(payload);
}

export interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json<T = Record<string, unknown>>(): T;
  /** The client socket the request went over (keep-alive checks). */
  socket: Socket;
}

export interface SendOptions {
  method?: string;
  headers?: OutgoingHttpHeaders;
  body?: string | Buffer | (() => AsyncIterable<Buffer>);
  agent?: Agent | false;
}

/** One HTTP/1.1 request; `url` may be absolute-form through a proxy via `proxy`. */
export function send(url: string, opts: SendOptions & { proxy?: string } = {}): Promise<Response> {
  const target = new URL(url);
  const via = opts.proxy ? new URL(opts.proxy) : target;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: via.hostname,
        port: via.port,
        method: opts.method ?? "GET",
        path: opts.proxy ? url : `${target.pathname}${target.search}`,
        headers: { ...(opts.proxy ? { host: target.host } : {}), ...opts.headers },
        agent: opts.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const body = Buffer.concat(chunks);
          const text = body.toString("utf8");
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            text,
            json: <T>() => JSON.parse(text) as T,
            socket: res.socket as Socket,
          });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    const body = opts.body;
    if (typeof body === "function") {
      void (async () => {
        try {
          for await (const chunk of body()) req.write(chunk);
          req.end();
        } catch (err) {
          req.destroy(err as Error);
        }
      })();
    } else req.end(body);
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `fn` is truthy (audit events land right before the response is released). */
export async function until<T>(fn: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting");
    await sleep(10);
  }
}

/** Audit events must carry the stable schema fields. */
export function expectAuditShape(e: AuditEvent): void {
  const missing = [
    "session",
    "connection",
    "protocol",
    "identity",
    "operation",
    "decision",
    "durationMs",
  ].filter((k) => !(k in e));
  if (missing.length > 0) throw new Error(`audit event lacks ${missing.join(", ")}`);
  if (typeof e.identity.serviceAccount !== "string") throw new Error("audit identity lacks serviceAccount");
  if (typeof e.decision.action !== "string" || typeof e.decision.reason !== "string")
    throw new Error("audit decision lacks action/reason");
}
