// Protocol-native refusals: JSON bodies with a stable `error` code, on a ServerResponse or, for
// CONNECT and WebSocket upgrades (where node hands over the raw socket), written by hand.
import type { ServerResponse } from "node:http";
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";

export interface ErrorBody {
  error: string;
  [key: string]: unknown;
}

/** Sends a JSON error unless a response is already under way (then the exchange is cut). */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: ErrorBody,
  opts: { close?: boolean } = {},
): void {
  if (res.destroyed) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const payload = Buffer.from(JSON.stringify(body));
  if (opts.close) res.shouldKeepAlive = false;
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": payload.length,
    "cache-control": "no-store",
    ...(opts.close ? { connection: "close" } : {}),
  });
  res.end(payload);
}

/** Writes a complete HTTP/1.1 JSON response on a raw socket and closes it. */
export function writeSocketJson(socket: Duplex, status: number, body: ErrorBody): void {
  if (socket.destroyed) return;
  const payload = Buffer.from(JSON.stringify(body));
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\n` +
    "content-type: application/json\r\n" +
    `content-length: ${payload.length}\r\n` +
    "cache-control: no-store\r\n" +
    "connection: close\r\n\r\n";
  socket.end(Buffer.concat([Buffer.from(head, "latin1"), payload]));
}
