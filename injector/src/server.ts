// The webhook's HTTPS server (POST /inject, GET /healthz, /readyz) and the plain-HTTP metrics
// server (/metrics, /healthz, /readyz). The serving certificate can be swapped while running.
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { admit, BadReviewError, errorReview, parseReview } from "./admission.ts";
import type { InjectorConfig } from "./config.ts";
import { type AdmissionResult, createInjectorMetrics, type InjectorMetrics } from "./metrics.ts";
import type { PolicySource } from "./policies.ts";
import type { TlsMaterial } from "./tls.ts";
import { REQUIRED_WEBHOOK_PATH, WEBHOOK_PATH } from "./webhook-config.ts";

/** The API server caps objects at ~1.5 MiB; an AdmissionReview carries one plus metadata. */
const MAX_BODY = 8 * 1024 * 1024;

export interface InjectorServerOptions {
  config: InjectorConfig;
  policies: PolicySource;
  tls: TlsMaterial;
  /** Default 0.0.0.0. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  /** Plain-HTTP metrics port; undefined: /metrics is served on the HTTPS port instead. */
  metricsPort?: number;
  metricsHost?: string;
  metrics?: InjectorMetrics;
  /** Readiness beyond "serving": e.g. the policy cache is synced. */
  ready?: () => boolean;
  log?: Logger;
}

export interface InjectorServer {
  readonly port: number;
  readonly metricsPort: number | undefined;
  readonly metrics: InjectorMetrics;
  /** https://HOST:PORT/inject (HOST as listened on; 127.0.0.1 for 0.0.0.0). */
  readonly url: string;
  setTls(material: TlsMaterial): void;
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new BadReviewError(`request body over ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function send(res: ServerResponse, code: number, body: string, type = "text/plain; charset=utf-8"): void {
  res.writeHead(code, { "content-type": type, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

export async function startInjectorServer(opts: InjectorServerOptions): Promise<InjectorServer> {
  const metrics = opts.metrics ?? createInjectorMetrics();
  const log = opts.log;
  const isReady = () => (opts.ready ? opts.ready() : true);

  async function handleInject(req: IncomingMessage, res: ServerResponse, required: boolean): Promise<void> {
    const started = process.hrtime.bigint();
    let result: AdmissionResult = "error";
    try {
      if (req.method !== "POST") return send(res, 405, "POST an AdmissionReview\n");
      let uid = "";
      try {
        const body = JSON.parse((await readBody(req)).toString("utf8")) as unknown;
        const request = parseReview(body);
        uid = request.uid;
        if (!isReady()) {
          // The policy cache decides which Secrets the sidecar gets: never inject without it.
          log?.warn({ uid }, "admission before the policy cache is synced; refused");
          const review = errorReview(
            uid,
            "airlock injector is starting (policy cache not synced yet); retry",
          );
          return send(res, 200, JSON.stringify(review), "application/json");
        }
        const outcome = admit(request, { config: opts.config, policies: opts.policies, required });
        result = outcome.result;
        if (result === "refused") log?.info({ result, uid }, outcome.detail);
        else log?.debug({ result, uid }, outcome.detail);
        send(res, 200, JSON.stringify(outcome.review), "application/json");
      } catch (err) {
        if (err instanceof BadReviewError || err instanceof SyntaxError) {
          log?.warn({ err: (err as Error).message }, "malformed AdmissionReview");
          return send(res, 400, `bad AdmissionReview: ${(err as Error).message}\n`);
        }
        log?.error({ err, uid }, "admission failed");
        send(
          res,
          200,
          JSON.stringify(errorReview(uid, `airlock injector: ${(err as Error).message}`)),
          "application/json",
        );
      }
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.admissions.inc({ result });
      metrics.admissionSeconds.observe({ result }, seconds);
    }
  }

  async function handleCommon(
    req: IncomingMessage,
    res: ServerResponse,
    withMetrics: boolean,
  ): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/healthz") return send(res, 200, "ok\n");
    if (path === "/readyz") return isReady() ? send(res, 200, "ok\n") : send(res, 503, "not ready\n");
    if (withMetrics && path === "/metrics") {
      return send(res, 200, await metrics.registry.metrics(), metrics.registry.contentType);
    }
    send(res, 404, "not found\n");
  }

  const https = createHttpsServer(
    { cert: opts.tls.cert, key: opts.tls.key, minVersion: "TLSv1.2" },
    (req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      const work =
        path === WEBHOOK_PATH || path === REQUIRED_WEBHOOK_PATH
          ? handleInject(req, res, path === REQUIRED_WEBHOOK_PATH)
          : handleCommon(req, res, opts.metricsPort === undefined);
      work.catch((err: unknown) => {
        log?.error({ err }, "request failed");
        if (!res.headersSent) send(res, 500, "internal error\n");
      });
    },
  );
  https.keepAliveTimeout = 65_000;
  const host = opts.host ?? "0.0.0.0";
  await listen(https, opts.port, host);

  let metricsServer: Server | undefined;
  if (opts.metricsPort !== undefined) {
    metricsServer = createHttpServer((req, res) => {
      handleCommon(req, res, true).catch(() => {
        if (!res.headersSent) send(res, 500, "internal error\n");
      });
    });
    await listen(metricsServer, opts.metricsPort, opts.metricsHost ?? host);
  }
  const port = (https.address() as AddressInfo).port;
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  return {
    port,
    metricsPort: metricsServer ? (metricsServer.address() as AddressInfo).port : undefined,
    metrics,
    url: `https://${urlHost}:${port}${WEBHOOK_PATH}`,
    setTls(material) {
      https.setSecureContext({ cert: material.cert, key: material.key, minVersion: "TLSv1.2" });
    },
    async close() {
      await Promise.all([closeServer(https), metricsServer ? closeServer(metricsServer) : undefined]);
    },
  };
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
