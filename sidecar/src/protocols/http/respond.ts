// Protocol-native refusals: JSON bodies with a stable `error` code, on a ServerResponse or, for
// CONNECT and WebSocket upgrades (where node hands over the raw socket), written by hand.
import type { ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { ErrorFormat } from "../../../../api/src/index.ts";
import { STATUS_CODES } from "../../runtime/node-http.ts";
import { shapeError } from "./error-format.ts";

export interface ErrorBody {
  error: string;
  [key: string]: unknown;
}

export interface RefuseOptions {
  close?: boolean;
  /** The connection's `errorFormat`: the upstream API's error envelope, or Airlock's JSON. */
  format?: ErrorFormat | undefined;
}

/** Sends a JSON error unless a response is already under way (then the exchange is cut). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: ErrorBody,
  opts: RefuseOptions = {},
): void {
  if (res.destroyed) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const shaped = shapeError(opts.format, status, body);
  const payload = Buffer.from(JSON.stringify(shaped.body));
  if (opts.close) res.shouldKeepAlive = false;
  res.writeHead(status, {
    ...shaped.headers,
    "content-type": "application/json",
    "content-length": payload.length,
    "cache-control": "no-store",
    ...(opts.close ? { connection: "close" } : {}),
  });
  res.end(payload);
}

/** Sends `body` as JSON exactly as given (no error envelope), unless a response is under way. */
export function sendRawJson(res: ServerResponse, status: number, body: unknown, close = false): void {
  if (res.destroyed) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const payload = Buffer.from(JSON.stringify(body));
  if (close) res.shouldKeepAlive = false;
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": payload.length,
    "cache-control": "no-store",
    ...(close ? { connection: "close" } : {}),
  });
  res.end(payload);
}

/** Writes a complete HTTP/1.1 JSON response on a raw socket and closes it. */
export function writeSocketJson(
  socket: Duplex,
  status: number,
  body: ErrorBody,
  format?: ErrorFormat | undefined,
): void {
  if (socket.destroyed) return;
  const shaped = shapeError(format, status, body);
  const payload = Buffer.from(JSON.stringify(shaped.body));
  const extra = Object.entries(shaped.headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\n` +
    extra +
    "content-type: application/json\r\n" +
    `content-length: ${payload.length}\r\n` +
    "cache-control: no-store\r\n" +
    "connection: close\r\n\r\n";
  socket.end(Buffer.concat([Buffer.from(head, "latin1"), payload]));
}
