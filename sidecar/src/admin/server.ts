// The admin port (15990): /metrics for Prometheus, /healthz (the process is alive), /readyz (a
// policy is loaded and every listener is up: the native-sidecar startup probe waits on it before
// the agent starts), and POST /drain for the preStop hook. Extra routes (the standalone approval
// API) mount through `routes`.
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { createServer } from "../runtime/node-http.ts";
import type { Metrics } from "../telemetry/metrics.ts";

export type Route = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean> | boolean;

export interface AdminServerOptions {
  host: string;
  port: number;
  metrics: Metrics;
  logger: Logger;
  /** Why the sidecar is not ready, or undefined when it is. */
  notReadyReason(): string | undefined;
  drain(trigger: string): Promise<void>;
  routes?: Route[];
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" }).end(`${JSON.stringify(body)}\n`);
};

const isLoopback = (addr: string | undefined) =>
  addr === "127.0.0.1" || addr === "::1" || addr === "::ffff:127.0.0.1";

export async function startAdminServer(
  opts: AdminServerOptions,
): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  let draining = false;
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://admin");
    try {
      if (req.method === "GET" && url.pathname === "/metrics") {
        res.writeHead(200, { "content-type": opts.metrics.registry.contentType });
        res.end(await opts.metrics.registry.metrics());
        return;
      }
      if (req.method === "GET" && url.pathname === "/healthz") return json(res, 200, { status: "ok" });
      if (req.method === "GET" && url.pathname === "/readyz") {
        const reason = draining ? "draining" : opts.notReadyReason();
        return reason ? json(res, 503, { status: "not ready", reason }) : json(res, 200, { status: "ready" });
      }
      if (url.pathname === "/drain") {
        // Only the pod itself (the preStop hook) may drain; probes and scrapers come from outside.
        if (req.method !== "POST") return json(res, 405, { error: "use POST" });
        if (!isLoopback(req.socket.remoteAddress))
          return json(res, 403, { error: "drain is only accepted from loopback" });
        draining = true;
        await opts.drain("preStop");
        return json(res, 200, { status: "drained" });
      }
      for (const route of opts.routes ?? []) if (await route(req, res, url)) return;
      json(res, 404, { error: "not found", paths: ["/metrics", "/healthz", "/readyz", "/drain"] });
    } catch (e) {
      opts.logger.error({ err: (e as Error).message, path: url.pathname }, "admin request failed");
      if (!res.headersSent) json(res, 500, { error: "internal error" });
      else res.destroy();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    server,
    port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
