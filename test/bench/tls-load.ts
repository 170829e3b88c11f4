// HTTPS load for `npm run bench -- --only https`, in its own process (so it does not share a thread
// with the upstream): N connections doing GETs back to back for a while, directly over TLS or
// through a CONNECT proxy (the sidecar's interception), keeping each connection alive or opening a
// fresh one (new TCP + TLS handshake, and CONNECT) for every request. Prints one JSON line.

import { readFileSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { createSecureContext, type TLSSocket, connect as tlsConnect } from "node:tls";

interface Spec {
  host: string;
  port: number;
  /** CONNECT through this proxy port on 127.0.0.1 first. */
  proxyPort?: number;
  servername: string;
  caFile: string;
  path: string;
  headers: Record<string, string>;
  seconds: number;
  connections: number;
  keepAlive: boolean;
}

const spec = JSON.parse(process.argv[2] ?? "{}") as Spec;
// One context for every connection, as a real client keeps one: building it from the bundle's
// roots costs the client ~6.6 ms, which a fresh-connection row would otherwise measure.
const secureContext = createSecureContext({ ca: readFileSync(spec.caFile) });
const latencies: number[] = [];
let errors = 0;
let handshakes = 0;

function readResponse(tls: TLSSocket): Promise<number> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString("latin1");
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? Number.NaN);
      if (!Number.isFinite(length)) return fail(new Error(`no content-length: ${head.split("\r\n")[0]}`));
      if (buf.length < end + 4 + length) return;
      cleanup();
      resolve(Number(head.split(" ")[1]));
    };
    const fail = (err: Error) => {
      cleanup();
      reject(err);
    };
    // Closed before any byte of the answer: the server ended the keep-alive connection (nginx
    // does after keepalive_requests); the request is sent again on a new one, not an error.
    const onClose = () => fail(Object.assign(new Error("closed"), { idle: buf.length === 0 }));
    function cleanup() {
      tls.off("data", onData);
      tls.off("error", fail);
      tls.off("close", onClose);
    }
    tls.on("data", onData);
    tls.once("error", fail);
    tls.once("close", onClose);
  });
}

async function open(): Promise<TLSSocket> {
  let socket: Socket | undefined;
  if (spec.proxyPort !== undefined) {
    socket = netConnect({ host: "127.0.0.1", port: spec.proxyPort });
    await new Promise<void>((resolve, reject) => {
      socket?.once("connect", () => resolve());
      socket?.once("error", reject);
    });
    socket.write(
      `CONNECT ${spec.servername}:${spec.port} HTTP/1.1\r\nHost: ${spec.servername}:${spec.port}\r\n\r\n`,
    );
    await new Promise<void>((resolve, reject) => {
      let head = "";
      const onData = (c: Buffer) => {
        head += c.toString("latin1");
        if (!head.includes("\r\n\r\n")) return;
        socket?.off("data", onData);
        if (/^HTTP\/1\.1 200/.test(head)) resolve();
        else reject(new Error(head.split("\r\n")[0]));
      };
      socket?.on("data", onData);
      socket?.once("error", reject);
    });
  }
  const tls = tlsConnect({
    ...(socket ? { socket } : { host: spec.host, port: spec.port }),
    servername: spec.servername,
    secureContext,
    // Node resumes a TLS session only when handed one: every fresh connection is a full handshake.
    ALPNProtocols: ["http/1.1"],
  });
  tls.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    tls.once("secureConnect", () => resolve());
    tls.once("error", reject);
  });
  handshakes++;
  return tls;
}

const headers = Object.entries({ host: spec.servername, ...spec.headers })
  .map(([k, v]) => `${k}: ${v}\r\n`)
  .join("");
const request = `GET ${spec.path} HTTP/1.1\r\n${headers}${spec.keepAlive ? "" : "connection: close\r\n"}\r\n`;
const deadline = Date.now() + spec.seconds * 1000;

async function worker(): Promise<void> {
  let tls: TLSSocket | undefined;
  while (Date.now() < deadline) {
    const t0 = performance.now();
    try {
      tls ??= await open();
      tls.write(request);
      const status = await readResponse(tls);
      if (status !== 200) errors++;
      else latencies.push(performance.now() - t0);
    } catch (err) {
      if (!(err as { idle?: boolean }).idle || !tls) errors++;
      tls?.destroy();
      tls = undefined;
      continue;
    }
    if (!spec.keepAlive) {
      tls.destroy();
      tls = undefined;
    }
  }
  tls?.destroy();
}

await Promise.all(Array.from({ length: spec.connections }, worker));
latencies.sort((a, b) => a - b);
const at = (q: number) =>
  latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
process.stdout.write(
  `${JSON.stringify({ requests: latencies.length, errors, handshakes, rps: latencies.length / spec.seconds, p50ms: at(0.5), p99ms: at(0.99) })}\n`,
);
