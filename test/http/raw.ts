// Raw-socket helpers: an upstream that logs exactly the bytes it receives and answers 200, and a
// client that writes a request line verbatim (no client library normalizes or re-encodes it).

import type { AddressInfo } from "node:net";
import { connect, createServer, type Server, type Socket } from "node:net";

export interface RawUpstream {
  port: number;
  /** Every request head received, verbatim (request line and headers, up to the blank line). */
  heads: string[];
  /** Request bodies, by arrival (only for requests with a Content-Length). */
  bodies: Buffer[];
  close(): Promise<void>;
}

/** A whole HTTP/1.1 response for a request head and body. */
export type RawResponder = (head: string, body: Buffer) => string | Buffer;

const OK: RawResponder = () =>
  'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}';

/** Answers every request (by default `200 {"ok":true}`) after reading its Content-Length body, if any. */
export async function startRawUpstream(respond: RawResponder = OK): Promise<RawUpstream> {
  const heads: string[] = [];
  const bodies: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    let buf = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const head = buf.subarray(0, end).toString("latin1");
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        heads.push(head);
        const body = Buffer.from(buf.subarray(end + 4, end + 4 + length));
        if (length) bodies.push(body);
        buf = buf.subarray(end + 4 + length);
        socket.write(respond(head, body));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    heads,
    bodies,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * Sends `request` (a complete HTTP/1.1 message, with `Connection: close`) verbatim; resolves when
 * the server closes, with the status, the head, and the body as bytes and text (unchunked).
 */
export function rawRequest(
  port: number,
  request: string | Buffer,
): Promise<{ status: number; head: string; bytes: Buffer; text: string }> {
  return new Promise((resolve, reject) => {
    // Written without a half-close: the guard treats an agent that ends its side as gone.
    const socket = connect(port, "127.0.0.1", () => socket.write(request));
    const chunks: Buffer[] = [];
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("error", reject);
    socket.on("close", () => {
      const all = Buffer.concat(chunks);
      const end = all.indexOf("\r\n\r\n");
      const head = end < 0 ? all.toString("latin1") : all.subarray(0, end).toString("latin1");
      let bytes: Buffer = end < 0 ? Buffer.alloc(0) : Buffer.from(all.subarray(end + 4));
      if (/\r\ntransfer-encoding: chunked/i.test(head)) bytes = unchunk(bytes);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      resolve({ status, head, bytes, text: bytes.toString("utf8") });
    });
  });
}

function unchunk(body: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = body.indexOf("\r\n", i);
    if (eol < 0) break;
    const size = Number.parseInt(body.subarray(i, eol).toString("latin1"), 16);
    if (!size) break;
    out.push(body.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

/** The request line of a logged head. */
export const requestLine = (head: string) => head.split("\r\n", 1)[0] ?? "";
