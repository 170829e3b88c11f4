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

/** Answers every request `200 {"ok":true}` after reading its Content-Length body, if any. */
export async function startRawUpstream(): Promise<RawUpstream> {
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
        if (length) bodies.push(Buffer.from(buf.subarray(end + 4, end + 4 + length)));
        buf = buf.subarray(end + 4 + length);
        socket.write(
          'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}',
        );
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

/** Sends `request` (a complete HTTP/1.1 message, with `Connection: close`) verbatim; resolves when the server closes. */
export function rawRequest(
  port: number,
  request: string | Buffer,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    // Written without a half-close: the guard treats an agent that ends its side as gone.
    const socket = connect(port, "127.0.0.1", () => socket.write(request));
    let out = "";
    socket.on("data", (c: Buffer) => {
      out += c.toString("utf8");
    });
    socket.on("error", reject);
    socket.on("close", () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0);
      resolve({ status, text: out.slice(out.indexOf("\r\n\r\n") + 4) });
    });
  });
}

/** The request line of a logged head. */
export const requestLine = (head: string) => head.split("\r\n", 1)[0] ?? "";
